"""A signer's video check in the browser (issue 17): the identity step reached through
the portal's HTTP API, and each challenge the page shows performed in front of
Chromium's fake camera (tests/support/fake_camera.py) by a portrait's person."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.async_api import Page

from firmware_sim.attestation import Manufacturer
from portal.identity import specimen
from portal.identity.mrz import DocumentFormat
from tests.support import selfies
from tests.support.fake_camera import FakeCamera
from tests.support.identity_fixtures import make_specimen
from tests.support.pcsc import RunningCard
from tests.support.portal_e2e import Stack, portal_stack, ready, until

# A person reads the instruction (the page films them still), then acts: the camera's
# loop (3 s at 10 frames/s) plays once and a little more before Done is pressed.
READ_SECONDS = 0.6
ACT_SECONDS = 3.4
Act = Callable[[str], list[Image.Image]]  # the instruction's action -> what is filmed


async def api(stack: Stack, method: str, path: str, body: Any = None,
              image: bytes | None = None) -> Any:
    """One call of the signer's API; its JSON answer (2xx asserted)."""
    kwargs: dict[str, Any] = {"json": body} if image is None else {
        "data": image, "headers": {"Content-Type": "image/png"}}
    async with stack.session.request(method, stack.api(path), **kwargs) as response:
        answer = await response.json()
        assert response.status in (200, 201), answer
        return answer


async def identity_session(stack: Stack, invite: str, document: specimen.Specimen,
                           kind: str) -> str:
    """Consents, personal data and issuance consents accepted, the identity session
    opened for `kind` and `document`'s sides sent: the session's API path."""
    base = f"/api/s/{invite}"
    view = await api(stack, "GET", base)
    await api(stack, "POST", f"{base}/consents", {"accepted": [
        {k: c[k] for k in ("kind", "version", "sha256")} for c in view["consents"]]})
    await api(stack, "POST", f"{base}/enrolment/start", {})
    view = await api(stack, "POST", f"{base}/enrolment/personal-data", {"correct": True})
    await api(stack, "POST", f"{base}/enrolment/consents", {"accepted": [
        {k: c[k] for k in ("kind", "version", "sha256")}
        for c in view["enrolment"]["consents"]]})
    view = await api(stack, "POST", f"{base}/enrolment/identity", {"document": kind})
    session = f"/api/identity/sessions/{view['enrolment']['identitySession']}"
    for side, image in document.images.items():
        await api(stack, "PUT", f"{session}/sides/{side.value}", image=image)
    return session


async def at_the_video_check(stack: Stack, name: str) -> Page:
    """A new signer whose passport (Anna Rossi's, with the astronaut's portrait) is
    verified, on their page at the video check."""
    transaction = await stack.one_signer_transaction("Lease", name, "anna@example.test",
                                                     "+33612345678")
    invite = transaction["signers"][0]["inviteUrl"].rsplit("/s/", 1)[1]
    passport = make_specimen(DocumentFormat.TD3, "ITA", "Rossi", "Anna", seed=31)
    await identity_session(stack, invite, passport, "passport")
    _, page = await stack.page()
    await page.goto(f"{stack.origin}/s/{invite}")
    await ready(page)
    await page.wait_for_selector("#liveness:not([hidden])", timeout=60000)
    return page


@asynccontextmanager
async def filmed_stack(tmp_path: Path, manufacturer: Manufacturer, card: RunningCard
                       ) -> AsyncIterator[tuple[Stack, FakeCamera]]:
    """`portal_stack` for first-time signers (the card factory-fresh), Chromium filming
    the fake camera, which shows the document's person facing it."""
    camera = FakeCamera(tmp_path / "camera.y4m")
    camera.show(idle())
    async with portal_stack(tmp_path, manufacturer, card, enrol=False,
                            browser_args=camera.flags) as stack:
        yield stack, camera


def idle(name: str | None = "astronaut", count: int = 30) -> list[Image.Image]:
    """`name`'s person facing the camera, only the sensor's noise moving (None: nobody,
    an empty wall)."""
    rng = random.Random()
    base = selfies.scene(selfies.portrait(name)) if name else Image.new(
        "RGB", selfies.FRAME, (186, 182, 172))
    return [selfies.noisy(base, rng) for _ in range(count)]


def doing(name: str) -> Act:
    """`name`'s person doing what each instruction asks: facing the camera for a second,
    the move, back."""
    def act(action: str) -> list[Image.Image]:
        moves = selfies.performance(selfies.portrait(name), action,
                                    seed=random.randrange(2**32))
        rest = idle(name)
        return [*rest[:2], *moves[2:], *moves[2:], *rest[2:4]]
    return act


async def perform(page: Page, camera: FakeCamera, act: Act, *, capture: str = "capture",
                  late: Callable[[], None] | None = None) -> str | None:
    """Start the video check and answer every instruction with `act(action)` on the
    camera; the failure code the page shows, or None once verified. `late` runs before
    Done is pressed (e.g. the service's clock passing the deadline)."""
    await page.click("#liveness-start")
    verified = f"document.getElementById('{capture}').dataset.identityStep === 'verified'"
    failed = "!document.getElementById('liveness-error').hidden"
    while True:
        await until(page, "document.getElementById('liveness').dataset.challenge || "
                          f"{verified} || {failed}", tries=2400)
        if await page.evaluate(f"() => {failed}"):
            code: str = await page.evaluate(
                "() => document.getElementById('liveness').dataset.failed")
            camera.show(idle())
            return code
        if await page.evaluate(f"() => {verified}"):
            camera.show(idle())
            return None
        index = await page.evaluate(
            "() => document.getElementById('liveness').dataset.challengeIndex")
        action = await page.evaluate(
            "() => document.getElementById('liveness').dataset.challenge")
        performance = act(action)
        await asyncio.sleep(READ_SECONDS)
        camera.show(performance)
        await asyncio.sleep(ACT_SECONDS)
        camera.show(idle())  # done: still again before the next instruction shows
        await until(page, "document.getElementById('liveness').dataset.ready === 'true'")
        if late is not None:
            late()
        await page.click("#challenge-done")
        await until(page, "document.getElementById('liveness').dataset.challengeIndex "
                          f"!== '{index}' || {failed} || {verified}", tries=2400)


async def perform_as_holder(page: Page, camera: FakeCamera, act: Act, *,
                            capture: str = "capture") -> str | None:
    """`perform` for the document's holder, who passes: once more when a move was not
    seen, so the caller leaves the holder an attempt of the session to spare (policy
    liveness_attempts; the last failed one locks the session). Chromium plays the fake
    camera's file in a loop at its own phase, and under a loaded CI machine the page's
    kept frames have once missed the synthesised turn; the judgement itself is tested
    frame by frame, with no camera, in tests/integration/test_identity_selfie.py."""
    outcome = await perform(page, camera, act, capture=capture)
    if outcome == "CHALLENGE_NOT_SEEN":
        locked = await page.evaluate(
            f"() => document.getElementById('{capture}').dataset.identityStep === 'locked'")
        assert not locked, "the holder's answer was the session's last liveness attempt"
        outcome = await perform(page, camera, act, capture=capture)
    return outcome
