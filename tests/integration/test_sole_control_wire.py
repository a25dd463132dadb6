"""Issue 13, the agent's wire and daemon side, attacked from outside through real
sockets: a revoked or dropped origin keeps nothing (break 5, SECURITY #37), a replay
answers only the origin that signed (break 6, #38), one origin cannot take every
WebSocket slot and slow or silent clients cannot hold the agent's descriptors (#40),
pairing asks only from web origins with a bounded list (#41), and deeply nested JSON
is a typed 400 (#46). The revocation and slow-socket attacks run against a real
`qsign agent run` process; the revocation is made by the real CLI process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import selectors
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

from agent.state import AgentState
from agent.tokens.registry import TokenRegistry
from tests.support import piv_apdus as piv
from tests.support.agent_daemon import (
    AgentProcess,
    http_get,
    running,
    wait_health,
)
from tests.support.agent_ws import PORTAL, Agent, rpc, with_agent
from tests.support.pcsc import RunningCard, connect
from tests.support.provision import CertIssuer, PyscardConnection, provision
from tests.support.second_factor import enrol_totp
from tests.support.waiting import DEADLINE

PIN = "123456"
OTHER = "https://other.example.test"
THIRD = "https://third.example.test:8443"


# Helpers ---------------------------------------------------------------------------------


def _hashes(tag: str, n: int = 2) -> list[str]:
    return [base64.b64encode(hashlib.sha256(f"{tag} {i}".encode()).digest()).decode()
            for i in range(n)]


def _provision(card: RunningCard) -> None:
    connection = connect(card.reader)
    provision(PyscardConnection(connection), 0x9C, piv.ALG_P256, CertIssuer())
    connection.disconnect()


async def _socket(session: aiohttp.ClientSession, agent: AgentProcess, origin: str
                  ) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(agent.url + "/v1/ws",
                                    headers={"Origin": origin, "Host": agent.host})


async def _handshake(session: aiohttp.ClientSession, agent: AgentProcess, origin: str) -> int:
    try:
        ws = await _socket(session, agent, origin)
    except aiohttp.WSServerHandshakeError as error:
        return error.status
    await ws.close()
    return 101


async def _pair(session: aiohttp.ClientSession, agent: AgentProcess, origin: str) -> None:
    """Pairing as a person does it: the page asks, the CLI approves the code."""
    async with session.post(agent.url + "/v1/pair",
                            json={"jsonrpc": "2.0", "method": "pair/request", "id": 1},
                            headers={"Origin": origin, "Host": agent.host}) as answer:
        code = (await answer.json())["result"]["code"]
    approved = await asyncio.to_thread(agent.cli, "approve", code)
    assert approved.returncode == 0, approved.stderr


# The code of each socket's close frame as the agent sent it: aiohttp's client answers a
# close frame itself and, when the agent drops the connection before that answer is
# written, reports ABNORMAL_CLOSURE (1006) in close_code although the frame said 1008.
_CLOSE_CODES: dict[int, int] = {}


def _close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    return _CLOSE_CODES.get(id(ws), ws.close_code)


async def _closed_by_agent(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Read until the agent closes the socket; the JSON messages it sent before."""
    seen: list[dict[str, Any]] = []
    while True:
        message = await asyncio.wait_for(ws.receive(), DEADLINE)
        if message.type is aiohttp.WSMsgType.CLOSE:
            _CLOSE_CODES[id(ws)] = message.data
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING):
            return seen
        if message.type is aiohttp.WSMsgType.TEXT:
            seen.append(json.loads(message.data))


async def _sign_hash(ws: aiohttp.ClientWebSocketResponse, credential: str, sad: str,
                     hashes: list[str], key: str | None = None, request_id: int = 1
                     ) -> dict[str, Any]:
    params = {"credentialID": credential, "SAD": sad, "hashes": hashes}
    if key is not None:
        params["idempotencyKey"] = key
    return await rpc(ws, "signatures/signHash", params, request_id)


async def _authorize(ws: aiohttp.ClientWebSocketResponse, credential: str, hashes: list[str],
                     otp: str, request_id: int = 1) -> str:
    reply = await rpc(ws, "credentials/authorize", {
        "credentialID": credential, "hashes": hashes, "PIN": PIN, "OTP": otp}, request_id)
    assert "result" in reply, reply
    sad: str = reply["result"]["SAD"]
    return sad


async def _signer(ws: aiohttp.ClientWebSocketResponse, state_dir: Path
                  ) -> tuple[str, pyotp.TOTP]:
    tokens = (await rpc(ws, "tokens/list"))["result"]["tokens"]
    credential = f"{tokens[0]['id']}/9C"
    return credential, await enrol_totp(ws, credential, PIN, state_dir)


# Break 5: revocation and policy reload ---------------------------------------------------


def test_revoked_pairing_loses_its_sockets_sads_and_replays(simulated_card: RunningCard,
                                                             tmp_path: Path) -> None:
    _provision(simulated_card)
    agent = AgentProcess(tmp_path)

    async def attack() -> None:
        async with aiohttp.ClientSession() as session:
            # A socket that sends nothing: the agent's sweep must see the CLI's revocation.
            await _pair(session, agent, THIRD)
            quiet = await _socket(session, agent, THIRD)
            revoked = await asyncio.to_thread(agent.cli, "origins", "--revoke", THIRD)
            assert revoked.returncode == 0, revoked.stderr
            assert await _closed_by_agent(quiet) == []
            assert _close_code(quiet) == aiohttp.WSCloseCode.POLICY_VIOLATION

            await _pair(session, agent, OTHER)
            ws = await _socket(session, agent, OTHER)
            idle = await _socket(session, agent, OTHER)  # sends nothing after this
            portal = await _socket(session, agent, PORTAL)
            credential, totp = await _signer(ws, agent.state_dir)
            unspent = await _authorize(ws, credential, _hashes("unspent"), totp.now(), 2)
            spent_hashes = _hashes("spent")
            spent = await _authorize(ws, credential, spent_hashes,
                                     totp.at(time.time() + totp.interval), 3)
            first = await _sign_hash(ws, credential, spent, spent_hashes, "retry-key-1", 4)
            assert len(first["result"]["signatures"]) == 2

            revoked = await asyncio.to_thread(agent.cli, "origins", "--revoke", OTHER)
            assert revoked.returncode == 0, revoked.stderr
            # The socket opened before the revocation asks for a signature at once
            # (unless the agent's sweep has closed it already).
            with contextlib.suppress(ConnectionError):
                await ws.send_str(json.dumps({
                    "jsonrpc": "2.0", "id": 5, "method": "signatures/signHash",
                    "params": {"credentialID": credential, "SAD": unspent,
                               "hashes": _hashes("unspent")}}))
            answered = await _closed_by_agent(ws)
            assert not any("result" in m for m in answered), answered
            assert _close_code(ws) == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert await _closed_by_agent(idle) == []  # closed without a message of its own
            assert await _handshake(session, agent, OTHER) == 403
            assert (await rpc(portal, "info", request_id=6))["result"]["origin"] == PORTAL

            # Paired again: what the old pairing held is gone.
            await _pair(session, agent, OTHER)
            again = await _socket(session, agent, OTHER)
            reply = await _sign_hash(again, credential, unspent, _hashes("unspent"),
                                     request_id=7)
            assert reply["error"]["data"] == {"error": "SAD_INVALID", "reason": "revoked"}
            replay = await _sign_hash(again, credential, spent, spent_hashes,
                                      "retry-key-1", 8)
            assert replay["error"]["data"]["error"] == "SAD_INVALID", replay
            for socket_ in (again, portal):
                await socket_.close()

    with running(agent):
        asyncio.run(attack())


def test_policy_reload_that_drops_an_origin_ends_its_sockets_and_sads(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    _provision(simulated_card)
    agent = AgentProcess(tmp_path, allowed_origins=[PORTAL, OTHER])

    async def attack() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await _socket(session, agent, OTHER)
            portal = await _socket(session, agent, PORTAL)
            credential, totp = await _signer(ws, agent.state_dir)
            hashes = _hashes("reload")
            sad = await _authorize(ws, credential, hashes, totp.now(), 2)

            agent.write_config(allowed_origins=[PORTAL])
            assert agent.process is not None
            agent.process.send_signal(signal.SIGHUP)
            assert await _closed_by_agent(ws) == []
            assert _close_code(ws) == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert await _handshake(session, agent, OTHER) == 403
            # The agent lives on and the origins the policy keeps are untouched.
            assert (await rpc(portal, "info", request_id=3))["result"]["origin"] == PORTAL

            # Allowed again by a later reload: the SAD it held before stays void.
            agent.write_config(allowed_origins=[PORTAL, OTHER])
            agent.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + DEADLINE
            while await _handshake(session, agent, OTHER) != 101:
                assert time.monotonic() < deadline, "the second reload was not applied"
                await asyncio.sleep(0.05)
            back = await _socket(session, agent, OTHER)
            reply = await _sign_hash(back, credential, sad, hashes, request_id=4)
            assert reply["error"]["data"] == {"error": "SAD_INVALID", "reason": "revoked"}
            await back.close()
            await portal.close()

    with running(agent):
        asyncio.run(attack())


# Break 6: replays bound to the origin ----------------------------------------------------


def test_a_replay_answers_only_the_origin_that_signed(simulated_card: RunningCard,
                                                       tmp_path: Path) -> None:
    _provision(simulated_card)

    @with_agent(tmp_path, registry=TokenRegistry(), allowed_origins=(PORTAL, OTHER))
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect(PORTAL)
        credential, totp = await _signer(ws, agent.config.state_dir)
        hashes = _hashes("replay")
        sad = await _authorize(ws, credential, hashes, totp.now(), 2)
        signed = await _sign_hash(ws, credential, sad, hashes, "shared-key-1", 3)
        signatures = signed["result"]["signatures"]

        thief = await agent.connect(OTHER)
        stolen = await _sign_hash(thief, credential, sad, hashes, "shared-key-1", 4)
        assert "result" not in stolen, "another origin collected the signatures"
        assert stolen["error"]["data"]["error"] == "SAD_INVALID"
        token = (agent.config.state_dir / "csc.token").read_text().strip()
        async with agent.session.post(
                agent.url + "/csc/v1/signatures/signHash",
                headers={"Authorization": f"Bearer {token}",
                         "Host": f"127.0.0.1:{agent.config.port}"},
                json={"credentialID": credential, "SAD": sad, "hash": hashes,
                      "signAlgo": "1.2.840.10045.4.3.2",
                      "idempotencyKey": "shared-key-1"}) as answer:
            body = await answer.json()
            assert answer.status == 400 and "signatures" not in body, body
        # The origin that signed still gets its own retry answered.
        retried = await _sign_hash(ws, credential, sad, hashes, "shared-key-1", 5)
        assert retried["result"]["signatures"] == signatures
        await thief.close()
        await ws.close()


# Weaknesses: connection caps and slow clients --------------------------------------------


def test_one_origin_cannot_take_every_websocket_slot(tmp_path: Path) -> None:
    hostile = "https://hostile.example.test"

    @with_agent(tmp_path, allowed_origins=(PORTAL, hostile))
    async def scenario(agent: Agent) -> None:
        taken: list[aiohttp.ClientWebSocketResponse] = []
        refused = 0
        for _ in range(agent.config.max_connections):
            try:
                taken.append(await agent.connect(hostile))
            except aiohttp.WSServerHandshakeError as error:
                assert error.status == 503
                refused += 1
        assert refused > 0, "one origin took every WebSocket slot"
        assert len(taken) == agent.config.max_connections_per_origin
        portal = await agent.connect(PORTAL)
        assert (await rpc(portal, "info"))["result"]["origin"] == PORTAL
        for ws in [*taken, portal]:
            await ws.close()


def _closed(sockets: list[socket.socket], deadline: float) -> list[socket.socket]:
    """Wait for the agent to close each socket (EOF or reset); the ones still open at
    the deadline."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, sock)
    open_ = set(sockets)
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            ready = key.data
            try:
                data = ready.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                selector.unregister(ready)
                open_.discard(ready)
    selector.close()
    return list(open_)


def test_slow_and_silent_connections_cannot_starve_the_agent(tmp_path: Path) -> None:
    # Few descriptors, as ~20,000 connections would leave a default agent.
    agent = AgentProcess(tmp_path, nofile=512, pcsc=False, header_timeout_seconds=2,
                     body_timeout_seconds=2, idle_timeout_seconds=2)
    head = f"GET /v1/health HTTP/1.1\r\nHost: {agent.host}\r\nX-Slow: ".encode()
    body = (f"POST /v1/pair HTTP/1.1\r\nHost: {agent.host}\r\nOrigin: https://x.test\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
    sockets: list[socket.socket] = []
    with running(agent):
        try:
            for i in range(600):  # more than the agent has descriptors
                sock = socket.create_connection(("127.0.0.1", agent.port))
                sockets.append(sock)
                if i % 3 == 1:
                    sock.sendall(head)
                elif i % 3 == 2:
                    sock.sendall(body)
            # While they are open, a monitor still gets its answer.
            status, _, answer = http_get(agent.port, "/v1/health", timeout=DEADLINE)
            assert status == 200 and json.loads(answer)["status"] == "ok"
            still_open = _closed(sockets, time.monotonic() + DEADLINE)
            assert not still_open, f"{len(still_open)} slow connections are still open"
            assert wait_health(agent.port, agent.process)["status"] == "ok"
        finally:
            for sock in sockets:
                sock.close()


# Weaknesses: pairing and JSON ------------------------------------------------------------


JUNK_ORIGINS = ["null", "file://", "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
                "moz-extension://1b2c3d4e", "https://" + "a" * 4000 + ".test",
                "https://portal.example.test/path", "https://portal.example.test:99999",
                "javascript:alert(1)", "https://exa mple.test"]


def test_only_web_origins_may_pair_and_waiting_codes_are_capped(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        async def ask(origin: str) -> tuple[int, dict[str, Any]]:
            async with agent.session.post(
                    agent.url + "/v1/pair",
                    json={"jsonrpc": "2.0", "method": "pair/request", "id": 1},
                    headers={"Origin": origin,
                             "Host": f"127.0.0.1:{agent.config.port}"}) as answer:
                reply: dict[str, Any] = await answer.json()
                return answer.status, reply

        for junk in JUNK_ORIGINS:
            status, reply = await ask(junk)
            assert status == 403, (junk[:40], reply)
            assert reply["error"]["data"]["error"] == "ORIGIN_NOT_ALLOWED"
        answers = [await ask(f"https://site{i}.example.test") for i in range(30)]
        codes = [a for s, a in answers if s == 200 and "code" in a["result"]]
        busy = [a for s, a in answers if s == 429]
        assert len(codes) == agent.config.max_pending_pairings
        assert busy and all(a["error"]["data"] == {"error": "RATE_LIMITED",
                                                   "reason": "too-many-pending"}
                            for a in busy)
        state = AgentState(agent.config.state_dir)
        try:
            waiting = state.pending()
        finally:
            state.close()
        assert len(waiting) == agent.config.max_pending_pairings
        assert all(origin.startswith("https://site") for _, origin in waiting)


def test_deeply_nested_json_is_a_typed_400_on_every_http_route(tmp_path: Path) -> None:
    deep = "[" * 50_000 + "]" * 50_000

    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        host = f"127.0.0.1:{agent.config.port}"
        async with agent.session.post(agent.url + "/v1/pair", data=deep, headers={
                "Origin": "https://deep.example.test", "Host": host}) as answer:
            assert answer.status == 400
            assert (await answer.json())["error"]["data"]["error"] == "PARSE_ERROR"
        token = (agent.config.state_dir / "csc.token").read_text().strip()
        for route in ("info", "credentials/list", "credentials/info", "credentials/sendOTP",
                      "credentials/authorize", "signatures/signHash"):
            async with agent.session.post(
                    f"{agent.url}/csc/v1/{route}", data=deep,
                    headers={"Authorization": f"Bearer {token}", "Host": host,
                             "Content-Type": "application/json"}) as answer:
                assert answer.status == 400, route
                assert (await answer.json())["error"] == "bad_request"
        secret = (agent.config.state_dir / "approve.secret").read_text().strip()
        async with agent.session.post(
                agent.url + "/v1/approve/decide", data=deep,
                headers={"X-Qsign-Approval": secret, "Host": host,
                         "Origin": f"http://127.0.0.1:{agent.config.port}",
                         "Content-Type": "application/json"}) as answer:
            assert answer.status == 400
            assert (await answer.json())["error"] == "BAD_REQUEST"
