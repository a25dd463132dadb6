"""Issue 13 break 3, the first-time signer's side (SECURITY #35), run from outside: a
real `qsign agent run` relaying SMS codes to a real portal on loopback, the simulated
card in a private pcscd, and a page's WebSocket from the portal's origin.

Without the second factor the page's pin/change, pin/unblock and enroll/generate are
refused before the card sees the PIN or PUK: a second PC/SC client reads the same
tries left. A first-time signer has no authenticator, so the portal texts a code bound
to the token (enrolment/otp); a code sent for another token, or for documents, does not
open this one (and stays usable for what it was sent for); the right one does, on this
connection, and the PIN then reaches the card."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from portal.store import EnrolmentStep
from tests.integration.test_portal_enrolment_codes import CHOSEN, signer_at_step
from tests.integration.test_sole_control_factor import Page, _card_counters
from tests.support import piv_apdus as piv
from tests.support.agent_daemon import AgentProcess
from tests.support.agent_ws import PORTAL
from tests.support.pcsc import RunningCard
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.waiting import wait_until_async

SIGNER_2 = "+33655443322"


def _code(portal: RunningPortal, phone: str) -> str:
    found = re.search(r"\b(\d{6})\b", portal.sms(phone)[-1])
    assert found is not None
    return found.group(1)


async def _call(page: Page, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """`method` once the agent's per-origin throttle lets it through: the waits are the
    agent's own `retryAfter`, then the call is made again."""
    async def attempt() -> dict[str, Any]:
        reply = await page.call(method, params)
        error = reply.get("error", {}).get("data", {})
        if error.get("error") == "RATE_LIMITED":
            await asyncio.sleep(min(10, error.get("retryAfter", 1)))
            return {}
        return reply
    reply: dict[str, Any] = await wait_until_async(attempt, f"{method} past the throttle")
    return reply


def _refused(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, f"answered: {reply}"
    data: dict[str, Any] = reply["error"]["data"]
    return data


def _certificate(name: str) -> bytes:
    """A self-made certificate naming `name`, DER (a non-qualified transaction whose
    portal trusts it as a root takes it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    given, surname = name.split(" ")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.GIVEN_NAME, given),
                         x509.NameAttribute(NameOID.SURNAME, surname)])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.KeyUsage(
                       digital_signature=False, content_commitment=True,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=False, crl_sign=False, encipher_only=False,
                       decipher_only=False), critical=True)
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(Encoding.DER)


async def _document_code(portal: RunningPortal, certificate: bytes) -> tuple[str, list[str]]:
    """Another signer's code for documents, texted as the agent's sendOTP has it texted:
    (its OTP session, the document hashes it is bound to)."""
    tx = await portal.create(documents=1, qualified=False, signers=[
        {"name": "Paul Martin", "email": "paul@example.test", "phone": SIGNER_2,
         "lang": "en"}])
    invite = portal.invite_path(tx, 0)
    await portal.consent(invite)
    await portal.call("POST", f"/api/s/{invite}/accept", {})
    prepared = await portal.call("POST", f"/api/s/{invite}/sign/prepare", {
        "certificate": base64.b64encode(certificate).decode(), "chain": [],
        "phoneConfirmed": True})
    await portal.call("POST", "/api/v1/sms-otp/send", {
        "session": prepared["otpSession"], "hashes": prepared["hashes"]}, agent=True)
    return prepared["otpSession"], prepared["hashes"]


def test_the_token_takes_no_pin_before_the_enrolment_code(simulated_card: RunningCard,
                                                          tmp_path: Path) -> None:
    paul = _certificate("Paul Martin")
    (tmp_path / "paul.der").write_bytes(paul)

    async def main() -> None:
        async with running_portal(tmp_path,
                                  trust_roots=[str(tmp_path / "paul.der")]) as portal:
            agent = AgentProcess(tmp_path, portal_url=portal.url, otp_mode="sms",
                                 portal_token_file=str(portal.agent_token_file))
            await asyncio.to_thread(agent.start)
            page = await Page.open(agent, PORTAL)
            try:
                await _scenario(portal, page, simulated_card, paul)
            finally:
                await page.close()
                await asyncio.to_thread(agent.stop)

    asyncio.run(main())


async def _scenario(portal: RunningPortal, page: Page, card: RunningCard,
                    paul: bytes) -> None:
    async def tokens() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await page.call("tokens/list", {}))["result"]["tokens"]
        return found
    token_id = (await wait_until_async(tokens, "the agent sees the card"))[0]["id"]
    invite = await signer_at_step(portal, EnrolmentStep.PIN)
    before = _card_counters(card)
    assert before == (3, 3)

    # Break 3 as a page runs it: the PIN and PUK methods without the second factor.
    for method, params in (
            ("pin/change", {"tokenID": token_id, "PIN": "000000", "newPIN": "2468"}),
            ("pin/unblock", {"tokenID": token_id, "PUK": "00000000", "newPIN": "2468"}),
            ("enroll/generate", {"tokenID": token_id, "keyID": "9C", "PIN": "000000"})):
        refused = _refused(await _call(page, method, params))
        assert refused == {"error": "SECOND_FACTOR_REQUIRED", "tokenID": token_id}, method
    assert _card_counters(card) == before, "a PIN or PUK try was burned"

    # A code sent for another token does not open this one.
    other = await portal.call("POST", f"/api/s/{invite}/enrolment/otp",
                              {"tokenID": f"{token_id}-other"})
    refused = _refused(await _call(page, "secondFactor/verify", {
        "tokenID": token_id, "OTP": _code(portal, CHOSEN), "otpSession": other["otpSession"]}))
    assert (refused["error"], refused.get("reason")) == ("INVALID_OTP", "hashes"), refused
    # Nor does another signer's code for documents, which still signs those documents.
    session, document_hashes = await _document_code(portal, paul)
    document_code = _code(portal, SIGNER_2)
    refused = _refused(await _call(page, "secondFactor/verify", {
        "tokenID": token_id, "OTP": document_code, "otpSession": session}))
    assert (refused["error"], refused.get("reason")) == ("INVALID_OTP", "hashes"), refused
    assert await portal.call("POST", "/api/v1/sms-otp/verify", {
        "session": session, "code": document_code, "hashes": document_hashes},
        agent=True) == {"verified": True}
    refused = _refused(await _call(page, "pin/change", {
        "tokenID": token_id, "PIN": piv.DEFAULT_PIN, "newPIN": "2468"}))
    assert refused["error"] == "SECOND_FACTOR_REQUIRED"
    assert _card_counters(card) == before

    # The code the portal sent for this token opens it, on this connection.
    portal.clock.advance(seconds=31)  # one code per 30 s to a phone
    mine = await portal.call("POST", f"/api/s/{invite}/enrolment/otp", {"tokenID": token_id})
    proof = await _call(page, "secondFactor/verify", {
        "tokenID": token_id, "OTP": _code(portal, CHOSEN), "otpSession": mine["otpSession"]})
    assert proof["result"] == {"tokenID": token_id, "method": "sms", "expiresIn": 300}
    # The PIN now reaches the card: a wrong one costs a try, the right one sets the PIN.
    wrong = _refused(await _call(page, "pin/change", {
        "tokenID": token_id, "PIN": "000000", "newPIN": "2468"}))
    assert (wrong["error"], wrong.get("attemptsLeft")) == ("INVALID_PIN", 2), wrong
    changed = await _call(page, "pin/change", {"tokenID": token_id, "PIN": piv.DEFAULT_PIN,
                                                "newPIN": "2468"})
    assert changed["result"] == {}, changed
    assert _card_counters(card) == (3, 3)
