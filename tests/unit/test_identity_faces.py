"""Faces and liveness from the face (issue 17) on real portraits that packages ship:
Eileen Collins, NASA, public domain (scikit-image's `astronaut`), and Grace Hopper,
U.S. Navy, public domain (matplotlib's `grace_hopper.jpg`). Head turns, looking up,
blinks and coming closer are synthesised from each portrait (tests/support/selfies.py)."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import pytest
from PIL import Image

from portal.config import ConfigError, PortalConfig
from portal.identity import faces, liveness, portraits, specimen
from portal.identity.model import IdentityPolicy
from portal.identity.mrz import DocumentFormat
from tests.support import selfies

THRESHOLD = IdentityPolicy().face_distance


@pytest.fixture(scope="module")
def document() -> Callable[[str], tuple[float, ...]]:
    """The portrait descriptor read from a specimen card printed with `name`'s face."""
    cache: dict[str, tuple[float, ...]] = {}

    def read(name: str) -> tuple[float, ...]:
        if name not in cache:
            data = specimen.make_data(DocumentFormat.TD1, country="FRA", surname="Martin",
                                      given_names="Lea", rng=random.Random(1))
            made = specimen.render(data, portrait=portraits.sample(name))
            picture = Image.open(io.BytesIO(made.images[specimen.Side.FRONT]))
            cache[name] = faces.descriptor(picture, faces.portrait(picture))
        return cache[name]

    return read


@pytest.mark.parametrize("fmt", list(DocumentFormat))
def test_the_portrait_is_found_on_the_photo_side(fmt: DocumentFormat) -> None:
    data = specimen.make_data(fmt, country="ITA", surname="Rossi", given_names="Anna",
                              rng=random.Random(2))
    made = specimen.render(data, portrait=portraits.sample("hopper"))
    picture = Image.open(io.BytesIO(made.images[specimen.SIDES[fmt][0]]))
    face = faces.portrait(picture)
    assert face.box[2] < picture.width / 3  # in the photo box, on the left
    silhouette = specimen.render(data)  # no portrait: a drawn silhouette is no face
    with pytest.raises(faces.FaceNotFound) as caught:
        faces.portrait(Image.open(io.BytesIO(silhouette.images[specimen.SIDES[fmt][0]])))
    assert caught.value.reason is faces.FaceReason.NONE


@pytest.mark.parametrize("name", ["astronaut", "hopper"])
def test_the_same_person_matches_under_camera_variations(
        name: str, document: Callable[[str], tuple[float, ...]]) -> None:
    other = "hopper" if name == "astronaut" else "astronaut"
    scene = selfies.scene(portraits.sample(name))
    for variation in selfies.variations(6, seed=11):
        picture = variation.apply(scene)
        vector = faces.descriptor(picture, faces.one_face(picture))
        assert faces.distance(vector, document(name)) < THRESHOLD, variation
        assert faces.distance(vector, document(other)) > THRESHOLD, variation


def test_no_face_and_several_faces_are_told_apart() -> None:
    noise = Image.effect_noise((640, 480), 60).convert("RGB")
    with pytest.raises(faces.FaceNotFound) as none:
        faces.one_face(noise)
    assert none.value.reason is faces.FaceReason.NONE
    two = selfies.several([portraits.sample("astronaut"), portraits.sample("hopper")])
    with pytest.raises(faces.FaceNotFound) as several:
        faces.one_face(two)
    assert several.value.reason is faces.FaceReason.SEVERAL and several.value.count == 2


ACTIONS = ("turn-head-left", "turn-head-right", "look-up", "blink", "come-closer")


@pytest.mark.parametrize("action", ACTIONS)
def test_each_challenge_is_seen_and_no_other(
        action: str, document: Callable[[str], tuple[float, ...]]) -> None:
    frames = selfies.performance(portraits.sample("astronaut"), action, seed=3)
    liveness.judge(action, frames, document("astronaut"), THRESHOLD)
    poses = [liveness.pose(faces.one_face(f)) for f in frames]
    assert [a for a in ACTIONS if liveness.performed(a, poses)] == [action]


def _verdict(action: str, frames: list[Image.Image], portrait: tuple[float, ...]
             ) -> liveness.Verdict:
    with pytest.raises(liveness.LivenessFailed) as caught:
        liveness.judge(action, frames, portrait, THRESHOLD)
    return caught.value.verdict


def test_another_person_a_still_picture_and_a_printed_photo_fail(
        document: Callable[[str], tuple[float, ...]]) -> None:
    mine = document("astronaut")
    hopper, astronaut = portraits.sample("hopper"), portraits.sample("astronaut")
    assert _verdict("blink", selfies.performance(hopper, "blink"), mine) \
        is liveness.Verdict.MISMATCH
    assert _verdict("blink", selfies.performance(astronaut, "still"), mine) \
        is liveness.Verdict.STILL
    for action in ("turn-head-left", "turn-head-right", "look-up", "blink"):
        assert _verdict(action, selfies.performance(astronaut, "flat"), mine) \
            is liveness.Verdict.NOT_SEEN
    assert _verdict("turn-head-right", selfies.performance(astronaut, "turn-head-left"),
                    mine) is liveness.Verdict.NOT_SEEN


def test_a_frame_without_a_face_or_with_two_fails(
        document: Callable[[str], tuple[float, ...]]) -> None:
    astronaut = portraits.sample("astronaut")
    frames = selfies.performance(astronaut, "blink")
    blank = [*frames[:3], Image.new("RGB", selfies.FRAME, (90, 90, 90)), *frames[4:]]
    assert _verdict("blink", blank, document("astronaut")) is liveness.Verdict.NO_FACE
    two = [*frames[:2], selfies.several([astronaut, portraits.sample("hopper")])]
    assert _verdict("blink", two, document("astronaut")) is liveness.Verdict.SEVERAL


def test_the_threshold_is_configuration() -> None:
    config = PortalConfig.from_mapping({"identity": {"face_distance": 0.5}})
    assert config.identity_policy is not None
    assert config.identity_policy.face_distance == 0.5
    with pytest.raises(ConfigError, match="face_distance"):
        PortalConfig.from_mapping({"identity": {"face_distance": "strict"}})
