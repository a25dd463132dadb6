"""Issue 17, "Attempts and sessions", in a real browser: a first-time signer whose video
check fails as many times as the identity service allows (nobody in front of
Chromium's fake camera, tests/support/fake_camera.py) is told what to do next (start
again with another verification) and is no longer offered the video check or "continue
on my smartphone" into the locked session, on their page, after a reload, and on the
phone's page that the hand-off's QR code opens; starting again opens a new session.

The passport is a SPECIMEN printed with Eileen Collins's NASA portrait (public domain,
bundled with scikit-image)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Page

from firmware_sim.attestation import Manufacturer
from portal.identity.model import IdentityPolicy
from tests.support.pcsc import RunningCard
from tests.support.portal_e2e import check_page, ready
from tests.support.selfie_e2e import api, at_the_video_check, filmed_stack, idle, perform

START_AGAIN = "Use another document / start again"
# The capture's buttons, inputs and pictures (the hand-off's QR code) that are rendered.
SHOWN_CONTROLS = """(root) => [...document.getElementById(root).querySelectorAll(
  'button, input, img')].filter((e) => e.getClientRects().length > 0)
  .map((e) => e.id || e.tagName)"""


async def _offers_only_a_new_start(page: Page) -> None:
    """The locked session's capture is closed: the restart button, nothing to film or
    to continue on a phone."""
    await page.wait_for_selector("#identity-restart", state="visible", timeout=60000)
    assert await page.evaluate(SHOWN_CONTROLS, "capture") == []
    assert await page.get_attribute("#capture", "data-identity-step") == "locked"
    await check_page(page)


def test_a_locked_video_check_says_start_again_and_offers_no_phone(
        simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path) -> None:
    async def main() -> None:
        async with filmed_stack(tmp_path, manufacturer, simulated_card) as (stack, camera):
            page = await at_the_video_check(stack, "Anna Rossi")
            invite = page.url.rsplit("/s/", 1)[1]
            session = (await api(stack, "GET", f"/api/s/{invite}"))["enrolment"][
                "identitySession"]
            for attempt in range(1, IdentityPolicy().liveness_attempts + 1):
                # Nobody in front of the camera: each attempt's first move fails.
                assert await perform(page, camera, lambda action: idle(None)) == \
                    "FACE_NOT_FOUND", attempt
            # The last one's reason and what to do next, where it stays visible.
            message = await page.text_content("#capture-error") or ""
            assert "face was not found" in message and START_AGAIN in message, message
            assert "video check again" not in message
            await _offers_only_a_new_start(page)
            await stack.shot(page, "44-liveness-locked")
            # A reload finds the session locked: the same, with the reason.
            await page.reload()
            await ready(page)
            await _offers_only_a_new_start(page)
            assert START_AGAIN in (await page.text_content("#capture-error") or "")
            # The phone's page for the locked session (the hand-off's address).
            _, phone = await stack.page(390, 844)
            await phone.goto(f"{stack.origin}/id/{session}")
            await ready(phone)
            await phone.wait_for_selector("#phone-locked", state="visible")
            assert await phone.evaluate(SHOWN_CONTROLS, "phone-capture") == []
            # Starting again opens a new session with its own capture.
            await page.click("#identity-restart")
            await page.check("#doc-passport")
            await page.click("#document-start")
            await page.wait_for_selector("#handoff-open", state="visible", timeout=60000)
            assert (await api(stack, "GET", f"/api/s/{invite}"))["enrolment"][
                "identitySession"] not in (None, session)

    asyncio.run(main())
