"""The agent's upstreams (SECURITY #32): it talks to the CA and the SMS OTP service named
in its own configuration only, over TLS it verifies, and forwards nothing to a URL a
page names. Real servers on loopback: an HTTPS upstream whose self-signed certificate
(made here with `cryptography`) no trust store holds, and a listener standing for the
URL an attacker's page would name; a real agent between them."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.tokens.registry import TokenRegistry
from tests.integration.test_agent_signing import PIN
from tests.support.agent_ws import Agent, rpc, with_agent
from tests.support.pcsc import RunningCard
from tests.support.ports import free_port
from tests.support.second_factor import grant_second_factor

EVIDENCE = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"  # a JWS's shape


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trust store holds, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "upstream.crt", directory / "upstream.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


class TlsUpstream:
    """An HTTPS server on loopback answering the CA's and the portal's routes. Its TLS
    key log shows each handshake the server took part in, completed or not."""

    def __init__(self, directory: Path) -> None:
        self.cert, key = _self_signed(directory)
        self.keylog = directory / "upstream-keylog.txt"
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.cert, key)
        self.context.keylog_filename = str(self.keylog)
        self.port = free_port()
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def handshakes(self) -> int:
        """Handshakes that reached the server's first flight (TLS 1.3 key log lines)."""
        if not self.keylog.exists():
            return 0
        return self.keylog.read_text().count("SERVER_HANDSHAKE_TRAFFIC_SECRET")

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if request.path == "/v1/enrol":
            return web.json_response({"error": "refused", "message": "upstream"}, status=422)
        return web.json_response({"phoneMasked": "+** *** **78", "expiresIn": 300})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port,
                          ssl_context=self.context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def reachable_by_a_client_that_trusts_it(self, path: str) -> int:
        """Not vacuous: the same upstream answers a client holding its certificate."""
        trusting = ssl.create_default_context(cafile=str(self.cert))
        async with aiohttp.ClientSession() as session, session.post(
                self.url + path, json={}, ssl=trusting) as response:
            return response.status


class NamedListener:
    """What a hostile page would name as its CA, portal or proxy target: counts every
    TCP connection made to it."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        self.connections += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
                     b"ATTACKER")
        await writer.drain()
        writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _error(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    return error


def test_the_sms_otp_client_refuses_an_upstream_it_cannot_verify(tmp_path: Path) -> None:
    upstream = TlsUpstream(tmp_path)
    token_file = tmp_path / "agent-portal.token"
    token_file.write_text("agent-credential-" + "x" * 32)

    @with_agent(tmp_path, portal_url=upstream.url, portal_token_file=token_file)
    async def scenario(agent: Agent) -> None:
        await upstream.start()
        try:
            ws = await agent.connect()
            reply = await rpc(ws, "credentials/sendOTP", {
                "credentialID": "token-1/9C", "hashes": ["A" * 43 + "="],
                "otpSession": "session-1"})
            assert _error(reply)["data"]["error"] == "OTP_UNAVAILABLE", reply
            assert upstream.handshakes() >= 1, "the agent never tried the upstream"
            assert upstream.requests == [], "a request went over unverified TLS"
            assert await upstream.reachable_by_a_client_that_trusts_it(
                "/api/v1/sms-otp/send") == 200
            await ws.close()
        finally:
            await upstream.stop()


def test_the_ca_client_refuses_an_upstream_it_cannot_verify_and_no_page_names_one(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    upstream = TlsUpstream(tmp_path)
    named = NamedListener()

    @with_agent(tmp_path, registry=TokenRegistry(), ca_url=upstream.url)
    async def scenario(agent: Agent) -> None:
        await upstream.start()
        await named.start()
        try:
            ws = await agent.connect()
            token_id = (await rpc(ws, "tokens/list"))["result"]["tokens"][0]["id"]
            await grant_second_factor(ws, token_id, agent.config.state_dir)
            generated = await rpc(ws, "enroll/generate", {"tokenID": token_id,
                                                          "keyID": "9C", "PIN": PIN})
            enrolment = generated["result"]["enrolmentID"]

            # The page names its own CA: the schema refuses the field, nothing is sent.
            for field in ("caURL", "ca_url", "url", "upstream"):
                reply = await rpc(ws, "enroll/complete", {
                    "enrolmentID": enrolment, "evidence": EVIDENCE, field: named.url})
                assert _error(reply)["code"] == -32602, (field, reply)

            reply = await rpc(ws, "enroll/complete", {"enrolmentID": enrolment,
                                                      "evidence": EVIDENCE})
            error = _error(reply)
            assert (error["data"]["error"], error["data"]["reason"]) == (
                "CA_UNAVAILABLE", "ca_unreachable"), reply
            assert upstream.handshakes() >= 1, "the agent never tried the CA"
            assert upstream.requests == [], "the evidence went over unverified TLS"
            assert await upstream.reachable_by_a_client_that_trusts_it("/v1/enrol") == 422
            assert named.connections == 0
            await ws.close()
        finally:
            await named.stop()
            await upstream.stop()


URL_FIELDS = ("url", "caURL", "portalURL", "timestampURL", "tsaURL", "ocspURL",
              "aiaURL", "callbackURL", "redirectURI")


def test_no_method_or_route_forwards_to_a_url_the_page_names(tmp_path: Path) -> None:
    named = NamedListener()

    @with_agent(tmp_path, requests_per_minute=100_000)  # one request per method and field
    async def scenario(agent: Agent) -> None:
        await named.start()
        try:
            ws = await agent.connect()
            methods = (await rpc(ws, "info"))["result"]["methods"]
            assert "enroll/complete" in methods and "documents/signPdf" in methods
            for i, method in enumerate(methods):
                for field in URL_FIELDS:
                    reply = await rpc(ws, method, {field: named.url}, request_id=i)
                    assert _error(reply)["code"] == -32602, (method, field, reply)
            await ws.close()
            await _http_attempts(agent, named)
            assert named.connections == 0, "the agent connected where a request told it"
        finally:
            await named.stop()


async def _http_attempts(agent: Agent, named: NamedListener) -> None:
    """Proxy-style requests to the agent's HTTP side: absolute-form targets, CONNECT,
    URL parameters on /v1/ paths and URL fields in CSC bodies (bearer token held)."""
    port = agent.config.port
    host = f"127.0.0.1:{port}"
    target = f"127.0.0.1:{named.port}"
    raw = [  # (request target, Host)
        (f"GET {named.url}/v1/health", host),
        (f"GET {named.url}/", target),
        (f"CONNECT {target}", target),
        (f"GET /v1/proxy?url={named.url}/", host),
        (f"GET /v1/health?url={named.url}/&redirect={named.url}/", host),
        (f"GET /v1/{named.url}/", host),
    ]
    for line, host_header in raw:
        answer = await _exchange(port, f"{line} HTTP/1.1\r\nHost: {host_header}\r\n"
                                       "Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 "), (line, answer[:200])
        assert b"ATTACKER" not in answer, (line, answer[:200])
    token = (agent.config.state_dir / "csc.token").read_text().strip()
    headers = {"Host": host, "Authorization": f"Bearer {token}"}
    for route in ("info", "credentials/list", "credentials/info", "credentials/sendOTP",
                  "credentials/authorize", "signatures/signHash"):
        body: dict[str, Any] = {field: named.url for field in URL_FIELDS}
        body.update(credentialID="token-1/9C", hash=["A" * 43 + "="], otpSession="s-1",
                    PIN="123456", OTP="123456", SAD="s" * 40,
                    signAlgo="1.2.840.10045.4.3.2")
        async with agent.session.post(f"{agent.url}/csc/v1/{route}", headers=headers,
                                      data=json.dumps(body)) as response:
            assert b"ATTACKER" not in await response.read(), route
    async with agent.session.post(f"{agent.url}/v1/pair", headers={
            "Host": host, "Origin": "https://portal.example.test",
            "Content-Type": "application/json"}, data=json.dumps({
            "jsonrpc": "2.0", "method": "pair/request", "id": 1,
            "params": {"url": named.url}})) as response:
        assert b"ATTACKER" not in await response.read()


async def _exchange(port: int, request: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 30)
    finally:
        writer.close()
