"""Test parts for the identity service: a settable clock, camera-like frames, specimen
sides as bytes, a service on a fresh evidence key, and its HTTP sub-application served
alone on loopback."""

from __future__ import annotations

import datetime as dt
import io
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from portal.identity import specimen
from portal.identity.evidence import EvidenceSigner
from portal.identity.http import create_identity_app
from portal.identity.model import IdentityPolicy
from portal.identity.mrz import DocumentFormat
from portal.identity.service import ReferenceIdentityService
from tests.support import selfies


class SettableClock:
    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def frames(count: int = 3, size: tuple[int, int] = (320, 240)) -> list[bytes]:
    """PNG frames like a webcam's: noise, each one different."""
    out = []
    for _ in range(count):
        image = Image.effect_noise(size, 40 + secrets.randbelow(40)).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def make_specimen(fmt: DocumentFormat, country: str = "FRA", surname: str = "Martin",
                  given_names: str = "Léa", *, defect: specimen.Defect | None = None,
                  seed: int | None = None, sex: str = "F",
                  portrait: str | None = "astronaut") -> specimen.Specimen:
    """A specimen with `portrait`'s face (portraits.SAMPLES; None: a silhouette)."""
    rng = random.Random(seed)
    data = specimen.make_data(fmt, country=country, surname=surname,
                              given_names=given_names, sex=sex, rng=rng)
    return specimen.render(data, defect=defect, rng=rng,
                           portrait=selfies.portrait(portrait) if portrait else None)


def selfie(action: str, portrait: str = "astronaut") -> list[bytes]:
    """A liveness answer: JPEG frames of `portrait`'s person doing `action` (the person
    of make_specimen's documents by default), new frames at each call."""
    return selfies.answer(portrait, action, seed=secrets.randbits(32))


def make_service(clock: SettableClock | None = None, **policy: object
                 ) -> tuple[ReferenceIdentityService, SettableClock]:
    clock = clock or SettableClock()
    values: dict[str, object] = {"accept_specimens": True}
    values.update(policy)
    service = ReferenceIdentityService(EvidenceSigner.generate(),
                                       IdentityPolicy.from_mapping(values), clock=clock)
    return service, clock


async def first_signer(request: web.Request) -> str:
    """Every request is signer-1's."""
    return "signer-1"


@asynccontextmanager
async def identity_app(service: ReferenceIdentityService, *, mount: str = "/id/",
                       signer_of: Callable[[web.Request], Awaitable[str]] | None
                       = first_signer,
                       continue_url: str = "https://portal.example.test/m/{session}"
                       ) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """`service`'s sub-application mounted at `mount` on a loopback server, as the portal
    mounts it: a client session and the sub-application's base URL (no trailing slash).
    `signer_of` None: an app that knows no signer."""
    root = web.Application()
    root.add_subapp(mount, create_identity_app(service, continue_url=continue_url,
                                               signer_of=signer_of))
    server = TestServer(root, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield http, f"http://127.0.0.1:{server.port}{mount.rstrip('/')}"
    finally:
        await server.close()
