"""Issue 17's acceptance in a real browser: the video check of a first-time signer
filmed by Chromium's fake camera (tests/support/fake_camera.py), on the signer's page.

The passport is a SPECIMEN printed with Eileen Collins's NASA portrait (public domain,
bundled with scikit-image); "another person" is Grace Hopper's U.S. Navy portrait
(public domain, in matplotlib's sample data). What the camera films is synthesised
from those portraits (tests/support/selfies.py), changed while the page films, as a
person acts on each instruction.

Another person doing what each instruction asks, nobody in front of the camera, and a
still picture of the document's person each fail at the video check with their own
message; the document's person doing it then passes, with an attempt of the session
(policy liveness_attempts) to spare for perform_as_holder's second answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Page

from firmware_sim.attestation import Manufacturer
from tests.support.pcsc import RunningCard
from tests.support.portal_e2e import check_page
from tests.support.selfie_e2e import (
    at_the_video_check,
    doing,
    filmed_stack,
    idle,
    perform,
    perform_as_holder,
)


async def _message(page: Page) -> str:
    return await page.text_content("#liveness-error") or ""


def test_the_video_check_wants_the_documents_person_alive(
        simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path) -> None:
    async def main() -> None:
        async with filmed_stack(tmp_path, manufacturer, simulated_card) as (stack, camera):
            page = await at_the_video_check(stack, "Anna Rossi")
            # Another person does what is asked: not the document's face.
            assert await perform(page, camera, doing("hopper")) == "FACE_MISMATCH"
            assert "not the one on the document" in await _message(page)
            await check_page(page)
            await stack.shot(page, "40-liveness-another-person")
            # Nobody in front of the camera.
            assert await perform(page, camera, lambda action: idle(None)) == \
                "FACE_NOT_FOUND"
            assert "face was not found" in await _message(page)
            await stack.shot(page, "41-liveness-no-face")
            # Another signer holds a still picture of the document's person up.
            holder = await at_the_video_check(stack, "Anna Rossi")
            assert await perform(holder, camera, lambda action: idle()) == "FACE_STILL"
            assert "Nothing moved" in await _message(holder)
            await check_page(holder)
            await stack.shot(holder, "42-liveness-still-picture")
            # Then the document's person does each thing asked, in the server's order: the
            # session's second attempt, so a move not seen leaves perform_as_holder a third.
            camera.show(idle())
            assert await perform_as_holder(holder, camera, doing("astronaut")) is None
            await holder.wait_for_selector("body[data-enrolment='identity-confirm']",
                                           timeout=60000)
            await stack.shot(holder, "43-liveness-passed")

    asyncio.run(main())
