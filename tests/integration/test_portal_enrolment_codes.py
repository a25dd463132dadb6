"""The portal's side of the second factor a first-time signer does not have yet
(SECURITY #35, issue 13 break 3): `enrolment/otp` texts a code bound to one token's
management hash, only at the steps that present the PIN or PUK, throttled like every
SMS code; `/api/v1/sms-otp/verify` (what the agent's `secondFactor/verify` calls)
accepts it once, for that token only, while the enrolment still needs it. The real app
on loopback, over SQLite and PostgreSQL; the agent's side is in
tests/integration/test_enrolment_second_factor.py."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from ground.binding import token_management_hash
from portal.links import Purpose
from portal.store import EnrolmentStep
from tests.support.portal_service import RunningPortal, with_portal

PHONE = "+33612345670"      # the requester's
CHOSEN = "+33699887766"     # chosen at auth-data: the codes go here
TOKEN = "piv-0123456789"
OTHER_TOKEN = "piv-9876543210"


def _hashes(token_id: str) -> list[str]:
    return [base64.b64encode(token_management_hash(token_id)).decode()]


async def signer_at_step(portal: RunningPortal, step: EnrolmentStep) -> str:
    """A signer past the consents, enrolment started and moved to `step` with the names
    and phone chosen (what identity and auth-data leave behind)."""
    tx = await portal.create(signers=[{"name": "Marie Curie", "email": "m@example.test",
                                       "phone": PHONE, "lang": "en"}], documents=1)
    invite = portal.invite_path(tx, 0)
    await portal.consent(invite)
    await portal.call("POST", f"/api/s/{invite}/enrolment/start", {})
    link = portal.state.links.open(Purpose.INVITE, invite,
                                   now=portal.store.clock().timestamp())
    portal.store.update_enrolment(
        link.subject, link.generation, EnrolmentStep.PERSONAL_DATA, step=step,
        auth={"givenNames": "Marie", "surname": "Curie", "phone": CHOSEN}, phone=CHOSEN)
    return invite


async def _ask(portal: RunningPortal, invite: str, token_id: str = TOKEN,
               expect: int = 200) -> Any:
    return await portal.call("POST", f"/api/s/{invite}/enrolment/otp",
                             {"tokenID": token_id}, expect=expect)


async def _verify(portal: RunningPortal, session: str, code: str, hashes: list[str],
                  expect: int = 200) -> Any:
    """What the agent's SMS OTP provider sends for secondFactor/verify."""
    return await portal.call("POST", "/api/v1/sms-otp/verify", {
        "session": session, "code": code, "hashes": hashes}, agent=True, expect=expect)


def _last_code(portal: RunningPortal) -> str:
    found = re.search(r"\b(\d{6})\b", portal.sms(CHOSEN)[-1])
    assert found is not None
    return found.group(1)


@with_portal()
async def test_a_token_code_opens_that_token_once(portal: RunningPortal) -> None:
    invite = await signer_at_step(portal, EnrolmentStep.PIN)
    sent = await _ask(portal, invite)
    assert set(sent) == {"otpSession", "phoneMasked", "expiresIn"}
    assert sent["expiresIn"] == 300 and sent["phoneMasked"].endswith("66")
    assert portal.sms(PHONE) == [] and len(portal.sms(CHOSEN)) == 1
    assert "token" in portal.sms(CHOSEN)[0]
    code = _last_code(portal)
    session = sent["otpSession"]
    # Another token, document hashes, no hashes: refused, and the code is not spent.
    document = [base64.b64encode(hashlib.sha256(b"a document").digest()).decode()]
    for hashes in (_hashes(OTHER_TOKEN), document, _hashes(TOKEN) + document):
        answer = await _verify(portal, session, code, hashes, expect=409)
        assert answer["error"] == "HASHES_MISMATCH", answer
    assert (await _verify(portal, session, code, _hashes(TOKEN))) == {"verified": True}
    again = await _verify(portal, session, code, _hashes(TOKEN), expect=409)
    assert again["error"] == "OTP_REPLAYED"
    # The agent's sendOTP cannot have an enrolment's code texted again.
    resend = await portal.call("POST", "/api/v1/sms-otp/send", {
        "session": session, "hashes": _hashes(TOKEN)}, agent=True, expect=404)
    assert resend["error"] == "SESSION_UNKNOWN"


@with_portal()
async def test_token_codes_only_while_the_pin_is_needed(portal: RunningPortal) -> None:
    invite = await signer_at_step(portal, EnrolmentStep.AUTH_DATA)
    early = await _ask(portal, invite, expect=409)
    assert early["error"] == "WRONG_STEP" and portal.sms(CHOSEN) == []
    link = portal.state.links.open(Purpose.INVITE, invite,
                                   now=portal.store.clock().timestamp())
    portal.store.advance_enrolment(link.subject, link.generation, EnrolmentStep.AUTH_DATA,
                                   EnrolmentStep.CERTIFICATE)
    sent = await _ask(portal, invite)  # the key is made within the code's grant
    code = _last_code(portal)
    # The enrolment ends before the code is spent: it no longer opens anything.
    portal.store.advance_enrolment(link.subject, link.generation,
                                   EnrolmentStep.CERTIFICATE, EnrolmentStep.DONE)
    late = await _verify(portal, sent["otpSession"], code, _hashes(TOKEN), expect=404)
    assert late["error"] == "SESSION_UNKNOWN"
    done = await _ask(portal, invite, expect=409)
    assert done["error"] == "WRONG_STEP"
    for body in ({}, {"tokenID": ""}, {"tokenID": "x" * 129}, {"tokenID": 7}):
        bad = await portal.call("POST", f"/api/s/{invite}/enrolment/otp", body, expect=400)
        assert bad["error"] == "BAD_REQUEST"


@with_portal()
async def test_token_codes_are_throttled_like_every_sms_code(portal: RunningPortal) -> None:
    invite = await signer_at_step(portal, EnrolmentStep.PIN)
    first = await _ask(portal, invite)
    first_code = _last_code(portal)
    again = await _ask(portal, invite, OTHER_TOKEN, expect=429)
    assert again["error"] == "OTP_THROTTLED" and again["retryAfter"] > 0
    assert len(portal.sms(CHOSEN)) == 1
    portal.clock.advance(seconds=31)
    second = await _ask(portal, invite)
    assert second["otpSession"] != first["otpSession"]
    # Five wrong codes lock the session, then the signer's codes for a while.
    for attempt in range(5):
        wrong = await _verify(portal, second["otpSession"], "000000", _hashes(TOKEN),
                              expect=None)
        assert wrong["error"] in ("OTP_INVALID", "OTP_LOCKED"), wrong
        portal.clock.advance(seconds=2 ** attempt)
    assert wrong["error"] == "OTP_LOCKED"
    locked = await _verify(portal, first["otpSession"], first_code, _hashes(TOKEN),
                           expect=423)
    assert locked["error"] == "OTP_LOCKED"
    portal.clock.advance(seconds=31)
    blocked = await _ask(portal, invite, expect=423)
    assert blocked["error"] == "OTP_LOCKED"
