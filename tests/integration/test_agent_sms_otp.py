"""SMS OTP end to end: the agent relays codes to a loopback server that implements the
portal's SMS OTP contract (tests/support/sms_portal.py), with the simulated card behind
pcscd. A right code signs; a wrong, expired, replayed or misbound code, or a portal
that is down, is refused before the card is touched (its PIN counter stays as it was,
even with a wrong PIN in the same request)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from agent.tokens.registry import TokenRegistry
from tests.integration.test_agent_signing import (
    PIN,
    _b64,
    _credential,
    _enrol_totp,
    _pin_retries,
    _provisioned,
    _spki_of,
)
from tests.support.agent_ws import Agent, rpc, with_agent
from tests.support.pcsc import RunningCard
from tests.support.pdfs import blank_pdf
from tests.support.ports import free_port
from tests.support.sms_portal import FakePortal

WRONG_PIN = "999999"


def with_sms_portal(tmp_path: Path, portal: FakePortal,
                    scenario: Callable[[Agent], Awaitable[None]], **settings: Any) -> None:
    """Run `scenario` against an agent whose portal_url is `portal`, both on loopback."""

    async def run(agent: Agent) -> None:
        await portal.start()
        try:
            await scenario(agent)
        finally:
            await portal.stop()

    token_file = tmp_path / "agent-portal.token"  # the agent reads it at each request
    token_file.write_text(portal.agent_token)
    with_agent(tmp_path, registry=TokenRegistry(), portal_url=portal.url,
               portal_token_file=token_file, **settings)(run)


def _error(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, reply
    data: dict[str, Any] = reply["error"]["data"]
    assert "Traceback" not in str(reply)
    return data


def test_sms_codes_gate_the_card(simulated_card: RunningCard, tmp_path: Path) -> None:
    _, cert_der = _provisioned(simulated_card)
    public = load_der_public_key(_spki_of(cert_der))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    documents = [hashlib.sha256(f"contract {i}".encode()).digest() for i in range(2)]
    hashes64 = [_b64(d) for d in documents]
    portal = FakePortal(port=free_port())

    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        credential = await _credential(agent, ws)
        session = portal.open_session(documents)

        async def send(rid: int, hs: list[str] = hashes64) -> dict[str, Any]:
            return await rpc(ws, "credentials/sendOTP", {
                "credentialID": credential, "hashes": hs, "otpSession": session}, rid)

        async def authorize(code: str, rid: int, pin: str = PIN,
                            hs: list[str] = hashes64) -> dict[str, Any]:
            return await rpc(ws, "credentials/authorize", {
                "credentialID": credential, "hashes": hs, "PIN": pin, "OTP": code,
                "otpSession": session}, rid)

        sent = await send(1)
        assert sent["result"] == {"phoneMasked": "+33 6•• •• •• 78", "expiresIn": 300}
        code = portal.last_code()
        wrong = "000000" if code != "000000" else "111111"
        before = _pin_retries(simulated_card)

        refused = _error(await authorize(wrong, 2, pin=WRONG_PIN))
        assert refused == {"error": "INVALID_OTP", "attemptsLeft": 4}
        other = [_b64(hashlib.sha256(b"another document").digest())]
        misbound = _error(await authorize(code, 3, pin=WRONG_PIN, hs=other))
        assert misbound == {"error": "INVALID_OTP", "reason": "hashes"}
        assert _pin_retries(simulated_card) == before, "a refused SMS code cost a PIN try"

        sad = (await authorize(code, 4))["result"]["SAD"]
        signed = await rpc(ws, "signatures/signHash", {
            "credentialID": credential, "SAD": sad, "hashes": hashes64}, 5)
        for digest, signature in zip(documents, signed["result"]["signatures"], strict=True):
            public.verify(base64.b64decode(signature), digest,
                          ec.ECDSA(Prehashed(hashes.SHA256())))

        replayed = _error(await authorize(code, 6, pin=WRONG_PIN))
        assert replayed == {"error": "INVALID_OTP", "reason": "replayed"}
        await send(7)
        portal.offset = 301  # five minutes and a second later
        expired = _error(await authorize(portal.last_code(), 8, pin=WRONG_PIN))
        assert expired["error"] == "OTP_EXPIRED"
        unknown = _error(await rpc(ws, "credentials/authorize", {
            "credentialID": credential, "hashes": hashes64, "PIN": WRONG_PIN, "OTP": code,
            "otpSession": "no-such-session"}, 9))
        assert unknown == {"error": "INVALID_OTP", "reason": "session"}
        assert _pin_retries(simulated_card) == before

        await portal.stop()  # the portal goes down
        down = _error(await authorize(code, 10, pin=WRONG_PIN))
        assert down == {"error": "OTP_UNAVAILABLE"}
        down_send = _error(await send(11))
        assert down_send == {"error": "OTP_UNAVAILABLE"}
        assert _pin_retries(simulated_card) == before
        await ws.close()

    with_sms_portal(tmp_path, portal, scenario)


def test_sms_for_pdfs_and_csc_and_otp_modes(simulated_card: RunningCard,
                                            tmp_path: Path) -> None:
    issuer, _ = _provisioned(simulated_card)
    pdfs = [blank_pdf(1), blank_pdf(2)]
    portal = FakePortal(port=free_port())

    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        credential = await _credential(agent, ws)
        # documents/signPdf: the code is bound to the SHA-256 of each PDF as submitted.
        session = portal.open_session([hashlib.sha256(p).digest() for p in pdfs])
        await rpc(ws, "credentials/sendOTP", {
            "credentialID": credential, "otpSession": session,
            "hashes": [_b64(hashlib.sha256(p).digest()) for p in pdfs]}, 1)
        swapped = _error(await rpc(ws, "documents/signPdf", {
            "credentialID": credential, "PIN": WRONG_PIN, "OTP": portal.last_code(),
            "otpSession": session, "documents": [_b64(p) for p in reversed(pdfs)]}, 2))
        assert swapped == {"error": "INVALID_OTP", "reason": "hashes"}
        reply = await rpc(ws, "documents/signPdf", {
            "credentialID": credential, "PIN": PIN, "OTP": portal.last_code(),
            "otpSession": session, "documents": [_b64(p) for p in pdfs]}, 3)
        trust = asn1_x509.Certificate.load(issuer.root_certificate())
        for data in reply["result"]["documents"]:
            status = await async_validate_pdf_signature(
                PdfFileReader(BytesIO(base64.b64decode(data))).embedded_signatures[0],
                ValidationContext(trust_roots=[trust]))
            assert status.intact and status.valid

        # otp_mode = "sms": a TOTP code is not accepted, even a right one.
        totp = await _enrol_totp(ws, credential, agent.config.state_dir)
        digest = [_b64(hashlib.sha256(b"t").digest())]
        totp_refused = _error(await rpc(ws, "credentials/authorize", {
            "credentialID": credential, "hashes": digest, "PIN": PIN,
            "OTP": totp.now()}, 4))
        assert totp_refused["error"] == "OTP_METHOD_NOT_ALLOWED"
        await ws.close()

        # CSC REST: sendOTP answers 204 (CSC v1 §11.7); authorize with the SMS code.
        token = (agent.config.state_dir / "csc.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}",
                   "Host": f"127.0.0.1:{agent.config.port}"}
        digest_bytes = hashlib.sha256(b"program document").digest()
        csc_session = portal.open_session([digest_bytes])
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(agent.url + "/csc/v1/credentials/sendOTP", json={
                    "credentialID": credential, "otpSession": csc_session,
                    "hash": [_b64(digest_bytes)]}) as answer:
                assert answer.status == 204
            async with http.post(agent.url + "/csc/v1/credentials/authorize", json={
                    "credentialID": credential, "numSignatures": 1,
                    "hash": [_b64(digest_bytes)], "PIN": PIN, "OTP": portal.last_code(),
                    "otpSession": csc_session}) as answer:
                assert answer.status == 200, await answer.text()
                assert "SAD" in await answer.json()
            await portal.stop()
            async with http.post(agent.url + "/csc/v1/credentials/authorize", json={
                    "credentialID": credential, "numSignatures": 1,
                    "hash": [_b64(digest_bytes)], "PIN": WRONG_PIN, "OTP": "123456",
                    "otpSession": csc_session}) as answer:
                assert answer.status == 503
                assert (await answer.json())["error"] == "otp_unavailable"

    with_sms_portal(tmp_path, portal, scenario, otp_mode="sms",
                    max_message_bytes=1024 * 1024)


@pytest.mark.parametrize(("settings", "message"), [
    ({"otp_mode": "totp", "portal_url": "http://127.0.0.1:9"}, "TOTP codes only"),
    ({}, "portal_url"),
])
def test_otp_mode_and_a_missing_portal_url_refuse_sms(tmp_path: Path, settings: dict[str, Any],
                                                      message: str) -> None:
    digest = [_b64(hashlib.sha256(b"d").digest())]
    params = {"credentialID": "piv-0/9C", "hashes": digest, "PIN": PIN, "OTP": "123456",
              "otpSession": "session-1"}

    @with_agent(tmp_path, **settings)
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        for rid, method in enumerate(("credentials/authorize", "credentials/sendOTP")):
            wanted = params if method.endswith("authorize") else {
                k: params[k] for k in ("credentialID", "hashes", "otpSession")}
            reply = await rpc(ws, method, wanted, rid)
            assert _error(reply) == {"error": "OTP_METHOD_NOT_ALLOWED"}
            assert message in reply["error"]["message"]
        await ws.close()
