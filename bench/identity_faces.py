"""The face part of bench/identity.py (issue 17): the face-match false-accept /
false-reject table the policy's `face_distance` is chosen from, the liveness moves seen,
and the time a frame costs. Run `python bench/identity.py faces [--quick N]`.

Portraits: Eileen Collins (NASA, public domain, scikit-image) and Grace Hopper (U.S.
Navy, public domain, matplotlib). Same-person pairs: a document's printed portrait
against camera-like variations of the person's selfie (scale, rotation, light, JPEG,
blur) and against the synthesised moves' frames; other-person pairs: the same selfies
against the other person's document. Two identities only: the other-person side is a
sanity check, not a calibration (dlib's model: 99.38% on LFW at 0.6).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from collections.abc import Callable

from PIL import Image

from portal.identity import faces, liveness, portraits, specimen
from portal.identity.model import IdentityPolicy
from portal.identity.mrz import DocumentFormat
from tests.support import selfies

PEOPLE = ("astronaut", "hopper")
VARIATIONS = 60  # selfies per person
THRESHOLDS = (0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70)
ACTIONS = liveness.ACTIONS


def _ms(fn: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _documents(name: str) -> list[tuple[float, ...]]:
    """The person's portrait as the service reads it from a TD1 front and a TD3 page,
    each sent as printed and as a phone photographs it."""
    out = []
    rng = random.Random(7)
    for fmt in DocumentFormat:
        data = specimen.make_data(fmt, country="FRA", surname="Martin", given_names="Lea",
                                  rng=rng)
        made = specimen.render(data, portrait=selfies.portrait(name))
        side = Image.open(io.BytesIO(made.images[specimen.SIDES[fmt][0]])).convert("RGB")
        shot = selfies.Variation(scale=0.9, rotation=4, light=0.8, quality=60, blur=0.8)
        for picture in (side, shot.apply(side)):
            out.append(faces.descriptor(picture, faces.portrait(picture)))
    return out


def _selfies(name: str, count: int, seed: int) -> list[Image.Image]:
    scene = selfies.scene(selfies.portrait(name))
    pictures = [v.apply(scene) for v in selfies.variations(count, seed)]
    for action in ACTIONS:  # the moves' frames too: turned, tilted, eyes closed, closer
        pictures += selfies.performance(selfies.portrait(name), action, seed=seed)[2:6]
    return pictures


def faces_section(args: argparse.Namespace) -> None:
    count = args.quick or VARIATIONS
    documents = {name: _documents(name) for name in PEOPLE}
    same: list[float] = []
    other: list[float] = []
    missed = 0
    for name in PEOPLE:
        for picture in _selfies(name, count, args.seed):
            try:
                face = faces.one_face(picture)
            except faces.FaceNotFound:
                missed += 1
                continue
            vector = faces.descriptor(picture, face)
            for person, descriptors in documents.items():
                distances = [faces.distance(vector, d) for d in descriptors]
                (same if person == name else other).extend(distances)
    chosen = IdentityPolicy().face_distance
    print(f"identity faces: {len(same)} same-person and {len(other)} other-person pairs "
          f"({len(PEOPLE)} people, {count} camera variations and "
          f"{4 * len(ACTIONS)} move frames each, against 4 document readings); "
          f"{missed} selfies without a face found")
    print(f"  distances: same person median {statistics.median(same):.3f} max "
          f"{max(same):.3f}; other person min {min(other):.3f} median "
          f"{statistics.median(other):.3f}")
    print("  threshold   false rejects (same person)   false accepts (other person)")
    for threshold in THRESHOLDS:
        rejects = sum(d > threshold for d in same)
        accepts = sum(d <= threshold for d in other)
        mark = "  <- policy face_distance" if threshold == chosen else ""
        print(f"  {threshold:9.2f}   {rejects:5d} = {100 * rejects / len(same):6.2f} %"
              f"          {accepts:5d} = {100 * accepts / len(other):6.2f} %{mark}")
    _liveness(args)
    _timing()


def _liveness(args: argparse.Namespace) -> None:
    """Each move's answers (fresh sensor noise per seed) judged as every challenge."""
    seeds = range(args.seed, args.seed + (5 if args.quick else 20))
    print(f"  liveness over {len(seeds)} answers each (rows: what the frames show; "
          "columns: the challenge judged; counts passed):")
    print("  " + " " * 16 + " ".join(f"{a[:12]:>12}" for a in ACTIONS) + "  still-flagged")
    for name in PEOPLE:
        for shown in (*ACTIONS, "still", "flat"):
            passed = dict.fromkeys(ACTIONS, 0)
            flagged = 0
            for seed in seeds:
                frames = selfies.performance(selfies.portrait(name), shown, seed=seed)
                poses = [liveness.pose(faces.one_face(f)) for f in frames]
                for action in ACTIONS:
                    passed[action] += liveness.performed(action, poses)
                flagged += liveness.still(poses)
            print(f"  {name[:4]} {shown[:11]:<11} "
                  + " ".join(f"{passed[a]:>12}" for a in ACTIONS) + f"  {flagged:>13}")


def _timing() -> None:
    frame = selfies.scene(selfies.portrait("astronaut"))
    face = faces.one_face(frame)
    frames = selfies.performance(selfies.portrait("astronaut"), "blink", seed=1) * 3
    portrait = faces.descriptor(frame, face)
    threshold = IdentityPolicy().face_distance
    faces.detect(frame)  # models loaded
    print(f"  time on this machine (one core): detection + landmarks "
          f"{_ms(lambda: faces.one_face(frame), 30):.1f} ms per 640x480 frame "
          f"(detection on 320 px); descriptor {_ms(lambda: faces.descriptor(frame, face), 10):.0f}"
          f" ms; a 24-frame answer judged "
          f"{_ms(lambda: liveness.judge('blink', frames, portrait, threshold), 5):.0f} ms")
    document = specimen.render(specimen.make_data(
        DocumentFormat.TD3, country="FRA", surname="Martin", given_names="Lea"),
        portrait=portraits.sample("astronaut")).images[specimen.Side.DATA_PAGE]
    page = Image.open(io.BytesIO(document)).convert("RGB")
    print(f"  the document's portrait found: {_ms(lambda: faces.portrait(page), 5):.0f} ms "
          f"(a {page.width}x{page.height} TD3 page, detection on 640 px upsampled once)")
