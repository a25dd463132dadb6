"""Test parts for the identity service: a settable clock, camera-like frames, specimen
sides as bytes, and a service on a fresh evidence key."""

from __future__ import annotations

import datetime as dt
import io
import random
import secrets

from PIL import Image

from portal.identity import specimen
from portal.identity.evidence import EvidenceSigner
from portal.identity.model import IdentityPolicy
from portal.identity.mrz import DocumentFormat
from portal.identity.service import ReferenceIdentityService


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
                  seed: int | None = None, sex: str = "F") -> specimen.Specimen:
    rng = random.Random(seed)
    data = specimen.make_data(fmt, country=country, surname=surname,
                              given_names=given_names, sex=sex, rng=rng)
    return specimen.render(data, defect=defect, rng=rng)


def make_service(clock: SettableClock | None = None, **policy: object
                 ) -> tuple[ReferenceIdentityService, SettableClock]:
    clock = clock or SettableClock()
    values: dict[str, object] = {"accept_specimens": True}
    values.update(policy)
    service = ReferenceIdentityService(EvidenceSigner.generate(),
                                       IdentityPolicy.from_mapping(values), clock=clock)
    return service, clock
