"""The video selfie step through the identity service's HTTP API (issue 17): the face
in the frames must be the one on the document, and do what each challenge asks.

The document is a SPECIMEN passport printed with Eileen Collins's NASA portrait (public
domain, bundled with scikit-image); "another person" is Grace Hopper's U.S. Navy
portrait (public domain, in matplotlib's sample data). Selfie frames are synthesised
from those portraits (tests/support/selfies.py), sent as the page sends them (JPEG,
base64 in JSON) to the sub-application served on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from PIL import Image

from portal.identity.http import STATUS
from portal.identity.mrz import DocumentFormat
from portal.identity.specimen import Side
from tests.support import selfies
from tests.support.identity_fixtures import (
    SettableClock,
    frames,
    identity_app,
    make_service,
    make_specimen,
    selfie,
)

Answer = Callable[[str], list[bytes]]  # the challenge's action -> frames


class Signer:
    """One signer's identity session over HTTP, its passport sent and verified."""

    def __init__(self, http: aiohttp.ClientSession, base: str, clock: SettableClock,
                 sid: str) -> None:
        self.http, self.base, self.clock, self.sid = http, base, clock, sid

    @classmethod
    async def verified(cls, http: aiohttp.ClientSession, base: str, clock: SettableClock,
                       portrait: str | None = "astronaut") -> tuple[Signer, dict[str, Any]]:
        async with http.post(f"{base}/sessions", json={"document": "passport"}) as r:
            sid = (await r.json())["session"]
        page = make_specimen(DocumentFormat.TD3, "ITA", "Rossi", "Anna", seed=5,
                             portrait=portrait)
        async with http.put(f"{base}/sessions/{sid}/sides/data-page",
                            data=page.images[Side.DATA_PAGE],
                            headers={"Content-Type": "image/png"}) as r:
            return cls(http, base, clock, sid), {"status": r.status, **await r.json()}

    async def answer(self, frames_for: Answer) -> tuple[int, dict[str, Any]]:
        """The next challenge answered with `frames_for(action)`, 2.5 s later."""
        async with self.http.post(f"{self.base}/sessions/{self.sid}/challenges/next") as r:
            challenge = await r.json()
            assert r.status == 200, challenge
        self.clock.advance(2.5)
        sent = frames_for(challenge["action"])
        async with self.http.post(
                f"{self.base}/sessions/{self.sid}/challenges/{challenge['id']}",
                json={"nonce": challenge["nonce"],
                      "frames": [base64.b64encode(f).decode() for f in sent]}) as r:
            return r.status, await r.json()


def _refused(status: int, body: dict[str, Any], code: str) -> None:
    assert body.get("error") == code, body
    assert status == STATUS[code] and body["message"]


def _serve(scenario: Callable[[aiohttp.ClientSession, str, SettableClock],
                              Awaitable[None]], liveness_attempts: int = 3) -> None:
    service, clock = make_service(liveness_attempts=liveness_attempts)

    async def run() -> None:
        async with identity_app(service) as (http, base):
            await scenario(http, base, clock)

    asyncio.run(run())


def _jpegs(pictures: list[Image.Image]) -> list[bytes]:
    return [selfies.jpeg(p) for p in pictures]


def test_the_document_holder_passes_and_every_impostor_fails_with_its_reason() -> None:
    hopper, astronaut = selfies.portrait("hopper"), selfies.portrait("astronaut")

    async def scenario(http: aiohttp.ClientSession, base: str, clock: SettableClock) -> None:
        holder, view = await Signer.verified(http, base, clock)
        assert view["status"] == 200 and view["step"] == "liveness", view
        impostor, _ = await Signer.verified(http, base, clock)
        # The first-time signer whose selfie shows the document's person passes.
        recorded: list[bytes] = []

        def mine(action: str) -> list[bytes]:
            recorded.extend(sent := selfie(action))
            return sent

        for _ in range(3):
            status, body = await holder.answer(mine)
            assert status == 200, body
        assert body["step"] == "verified"
        # Each other answer fails at the liveness step with its own code.
        _refused(*await impostor.answer(lambda action: selfie(action, "hopper")),
                 "FACE_MISMATCH")
        _refused(*await impostor.answer(lambda action: frames(4, size=(640, 480))),
                 "FACE_NOT_FOUND")
        two = selfies.several([astronaut, hopper])
        _refused(*await impostor.answer(lambda action: _jpegs(
            [selfies.noisy(two, random.Random(i)) for i in range(4)])),
            "FACE_SEVERAL")
        _refused(*await impostor.answer(lambda action: _jpegs(
            selfies.performance(astronaut, "still", seed=8))), "FACE_STILL")
        status, body = await impostor.answer(lambda action: _jpegs(
            selfies.performance(astronaut, "flat", seed=9)))
        _refused(status, body, "CHALLENGE_NOT_SEEN")
        assert body["action"] in ("turn-head-left", "turn-head-right", "look-up", "blink",
                                  "come-closer")
        # Another session's frames, even the document holder's own, answer nothing here.
        _refused(*await impostor.answer(lambda action: recorded[:4]), "FRAMES_REPLAYED")
        async with http.get(f"{base}/sessions/{impostor.sid}") as r:
            assert (await r.json())["step"] == "liveness"

    _serve(scenario, liveness_attempts=10)


def test_a_document_without_a_face_is_refused_at_the_document_step() -> None:
    async def scenario(http: aiohttp.ClientSession, base: str, clock: SettableClock) -> None:
        _, view = await Signer.verified(http, base, clock, portrait=None)
        assert view["error"] == "DOCUMENT_NO_FACE" and view["status"] == 422, view

    _serve(scenario)


def test_frames_stay_refused_after_their_session_expired() -> None:
    """A recording of the holder's accepted answer, replayed in a session opened once
    the holder's expired (30 minutes): the ledger keeps the frames for the policy's
    frames_kept_days, not for their session's life."""

    async def scenario(http: aiohttp.ClientSession, base: str, clock: SettableClock) -> None:
        holder, _ = await Signer.verified(http, base, clock)
        recorded: list[bytes] = []

        def mine(action: str) -> list[bytes]:
            recorded.extend(sent := selfie(action))
            return sent

        status, body = await holder.answer(mine)
        assert status == 200, body
        clock.advance(31 * 60)
        async with http.get(f"{base}/sessions/{holder.sid}") as r:
            assert (await r.json())["error"] == "IDENTITY_SESSION_EXPIRED"
        later, view = await Signer.verified(http, base, clock)
        assert view["step"] == "liveness", view
        _refused(*await later.answer(lambda action: recorded), "FRAMES_REPLAYED")

    _serve(scenario)
