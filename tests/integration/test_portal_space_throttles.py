"""SECURITY #42 (issue 13): Personal Space codes, attacked from outside. A stranger
holding a space's link hammers code requests and guesses against the portal on
loopback; the owner's signing SMS still goes out through the real agent (the simulated
card in a private pcscd, tests/integration/test_portal_signing.py's stack), and guesses
at one phone across sessions stay bounded (50 in an hour before the fix).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.pcsc import RunningCard
from tests.support.portal_service import RunningPortal, with_portal
from tests.support.signing_stack import PHONE, Stack, with_stack


async def _post(url: str, body: Any, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
    """A plain HTTP client: nothing but what the caller gives."""
    async with aiohttp.ClientSession() as http, http.post(url, json=body,
                                                          headers=headers) as answer:
        return answer.status, await answer.json()


def _space(portal: RunningPortal) -> tuple[str, str]:
    """Personal Space of s1@example.test: where codes are asked, where they are typed."""
    space = portal.state.space_url("s1@example.test").split("/me/", 1)[1]
    return f"{portal.url}/api/me/{space}/otp", f"{portal.url}/api/me/{space}/session"


def test_personal_space_code_requests_never_stop_the_owners_signing(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    @with_stack(tmp_path, simulated_card)
    async def scenario(stack: Stack) -> None:
        portal = stack.portal
        tx = await portal.create(level="B-B", signers=1)
        otp_url, login_url = _space(portal)
        # A stranger with the space's link asks for codes as fast as they can.
        answers = [await _post(otp_url, {}) for _ in range(20)]
        assert [s for s, _ in answers].count(200) == 1, answers
        assert {a["error"] for s, a in answers if s != 200} == {"OTP_THROTTLED"}
        assert all(0 < a["retryAfter"] <= 30 for s, a in answers if s != 200)
        assert len(portal.sms(PHONE)) == 1
        # The owner's signing code still goes out through the agent, and signs.
        assert (await stack.sign(await stack.ready_to_sign(tx, 0)))["step"] == "done"
        # ... and her Personal Space opens after a short cool-down, not an hour.
        portal.clock.advance(seconds=30)
        status, sent = await _post(otp_url, {})
        assert status == 200, sent
        code = re.findall(r"\b(\d{6})\b", portal.sms(PHONE)[-1])[0]
        status, opened = await _post(login_url, {"otpSession": sent["otpSession"],
                                                  "code": code})
        assert status == 200 and opened["session"], opened


@with_portal()
async def test_personal_space_guesses_across_sessions_are_bounded(portal: RunningPortal
                                                                  ) -> None:
    """On SQLite and PostgreSQL: the counters live in the database."""
    await portal.create(signers=1, documents=1)
    otp_url, login_url = _space(portal)
    # A stranger guesses for an hour, asking a new code whenever one is used up.
    session, attempts = None, 0
    for _ in range(360):
        portal.clock.advance(seconds=10)
        if session is None or attempts == 0:
            status, answer = await _post(otp_url, {})
            if status == 200:
                session, attempts = answer["otpSession"], 5
            continue
        texted = re.findall(r"\b(\d{6})\b", portal.sms(PHONE)[-1])
        wrong = "000000" if texted != ["000000"] else "111111"
        status, answer = await _post(login_url, {"otpSession": session, "code": wrong})
        assert status != 200
        if answer["error"] == "OTP_INVALID":
            attempts = answer["attemptsLeft"]
        elif answer["error"] == "OTP_LOCKED":
            attempts = 0
    with portal.store.db.transaction() as cur:
        cur.execute("SELECT COALESCE(SUM(failures), 0) FROM otp_sessions "
                    "WHERE purpose = 'space'")
        guesses = int(cur.fetchone()[0])
    # One free, waits of 30, 60, 120, 240 s, then one each 5 minutes: at most 16 in an
    # hour (50 before).
    assert 5 <= guesses <= 16, guesses
