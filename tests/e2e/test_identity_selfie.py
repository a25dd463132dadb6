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
(policy liveness_attempts) to spare for perform_as_holder's second answer. On a phone
whose picture encoder is slower than the page's frame timer, each answer still carries
distinct pictures, as many as the challenge asks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from pathlib import Path

from PIL import Image
from playwright.async_api import Page, Request

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


# A phone whose JPEG encoder takes longer than the page's frame timer (150 ms): the
# camera's picture (each held about 200 ms by `doing`) is seen again by the next tick
# while the previous one is still being encoded.
SLOW_ENCODER = """() => {
  const toBlob = HTMLCanvasElement.prototype.toBlob;
  HTMLCanvasElement.prototype.toBlob = function (callback, ...rest) {
    toBlob.call(this, (blob) => setTimeout(() => callback(blob), 250), ...rest);
  };
}"""


def test_a_slow_phone_sends_each_picture_once(
        simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path) -> None:
    answers: list[list[bytes]] = []

    def keep(request: Request) -> None:
        if request.method == "POST" and "/challenges/" in request.url \
                and not request.url.endswith("/next"):
            answers.append([base64.b64decode(frame)
                            for frame in json.loads(request.post_data or "{}")["frames"]])

    async def main() -> None:
        async with filmed_stack(tmp_path, manufacturer, simulated_card) as (stack, camera):
            page = await at_the_video_check(stack, "Anna Rossi")
            await page.evaluate(SLOW_ENCODER)
            page.on("request", keep)
            assert await perform_as_holder(page, camera, doing("astronaut")) is None
            await page.wait_for_selector("body[data-enrolment='identity-confirm']",
                                         timeout=60000)

    asyncio.run(main())
    assert answers, "no answer was sent"
    for frames in answers:  # the service's copy check: decoded pixels, not file bytes
        pixels = {hashlib.sha256(Image.open(io.BytesIO(frame)).tobytes()).digest()
                  for frame in frames}
        assert len(pixels) == len(frames) >= 4, (len(pixels), len(frames))
