"""Liveness from the face: an answer's frames show one face, the document's person, that
does what the challenge asked, in the order it happens (frames are in capture order).

Measures per frame, from the 68 landmarks (faces.py), each a ratio of distances within
the face so that moving, rolling, scaling or tilting a flat picture of a face (an affine
map, near enough) leaves it unchanged while a head turning in 3-D changes it:

- yaw: where the nose tip falls between the jaw's two ends, along the eyes' axis
  (0.5 facing the camera; more when the nose moves to the picture's right);
- pitch: the nose tip's distance below the eyes over the chin's (smaller looking up);
- eye aspect ratio (Soukupová & Čech, "Real-Time Eye Blink Detection using Facial
  Landmarks", CVWW 2016): the lids' opening over the eye's width, both eyes averaged;
- size: the distance between the eyes' centres in pixels (coming closer: larger).

Frames are the camera's own (not mirrored): a subject who turns to their left moves
their nose to the picture's right.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from portal.identity import faces

log = logging.getLogger(__name__)

# How much a measure must change within an answer (synthetic warps and the iBUG layout;
# a vendor calibrates these on recorded attacks, ISO/IEC 30107-3).
YAW_CHANGE = 0.1  # a printed photo rolled and moved reaches 0.09 (bench)
PITCH_CHANGE = 0.05
BLINK_DIP = 0.5  # the eyes at most half as open as before and after (looking up: 0.7)
CLOSER_GROWTH = 1.15
# Below these the face did not move in the picture: a fraction of the distance between
# the eyes (place), of the size, and degrees (roll).
STILL = 0.08
STILL_ROLL = 2.0
ACTIONS = ("turn-head-left", "turn-head-right", "look-up", "blink", "come-closer")


class Verdict(enum.StrEnum):
    """Why an answer fails: the wire codes (http.STATUS)."""

    NO_FACE = "FACE_NOT_FOUND"
    SEVERAL = "FACE_SEVERAL"
    MISMATCH = "FACE_MISMATCH"
    STILL = "FACE_STILL"
    NOT_SEEN = "CHALLENGE_NOT_SEEN"


class LivenessFailed(Exception):
    def __init__(self, verdict: Verdict, message: str, **extra: object) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.extra = extra


@dataclass(frozen=True)
class Pose:
    yaw: float
    pitch: float
    ear: float
    size: float
    centre: faces.Point  # between the eyes, in the picture's pixels
    roll: float  # the eyes' axis, degrees


def _centre(points: Sequence[faces.Point]) -> faces.Point:
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


def _ear(eye: Sequence[faces.Point]) -> float:
    """Eye aspect ratio, points p1..p6 of the iBUG eye (Soukupová & Čech 2016, eq. 1)."""
    p1, p2, p3, p4, p5, p6 = eye
    return (math.dist(p2, p6) + math.dist(p3, p5)) / (2 * math.dist(p1, p4) or 1.0)


def pose(face: faces.Face) -> Pose:
    """The measures of one face (see the module's docstring)."""
    pts = face.landmarks
    right_eye = [pts[i] for i in faces.RIGHT_EYE]
    left_eye = [pts[i] for i in faces.LEFT_EYE]
    a, b = _centre(right_eye), _centre(left_eye)
    size = math.dist(a, b) or 1.0
    ux, uy = (b[0] - a[0]) / size, (b[1] - a[1]) / size  # along the eyes
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)

    def along(p: faces.Point) -> float:
        return (p[0] - mid[0]) * ux + (p[1] - mid[1]) * uy

    def across(p: faces.Point) -> float:
        return -(p[0] - mid[0]) * uy + (p[1] - mid[1]) * ux

    jaw0, jaw16 = along(pts[0]), along(pts[16])
    nose = pts[faces.NOSE_TIP]
    yaw = (along(nose) - jaw0) / ((jaw16 - jaw0) or 1.0)
    pitch = across(nose) / (across(pts[8]) or 1.0)
    return Pose(yaw, pitch, (_ear(right_eye) + _ear(left_eye)) / 2, size, mid,
                math.degrees(math.atan2(uy, ux)))


def _rises(values: Sequence[float], by: float) -> bool:
    """Two values exceed the start by `by`: the move starts from where the face was
    when the challenge showed, the first two frames' mean (coming back from the other
    side is not the move), and one frame alone may be a landmark's slip."""
    start = (values[0] + values[1]) / 2
    return sum(v - start >= by for v in values[2:]) >= 2


def _dips(values: Sequence[float], ratio: float) -> bool:
    """A value at most `ratio` times both the largest before it and the largest after."""
    return any(v <= ratio * max(values[:i]) and v <= ratio * max(values[i + 1:])
               for i, v in enumerate(values) if 0 < i < len(values) - 1)


def performed(action: str, poses: Sequence[Pose]) -> bool:
    """Whether the poses, in capture order, show `action` being done."""
    if action == "turn-head-left":
        return _rises([p.yaw for p in poses], YAW_CHANGE)
    if action == "turn-head-right":
        return _rises([-p.yaw for p in poses], YAW_CHANGE)
    if action == "look-up":
        return _rises([-p.pitch for p in poses], PITCH_CHANGE)
    if action == "blink":
        return _dips([p.ear for p in poses], BLINK_DIP)
    if action == "come-closer":
        return _rises([math.log(p.size) for p in poses], math.log(CLOSER_GROWTH))
    return False


def still(poses: Sequence[Pose]) -> bool:
    """Nothing moved beyond sensor noise: no challenge's move, and the face kept its
    place, size and roll in the picture (a printed photo held up moves there)."""
    first = poses[0]
    if any(performed(action, poses) for action in ACTIONS):
        return False
    return all(math.dist(p.centre, first.centre) < STILL * first.size
               and abs(math.log(p.size / first.size)) < STILL
               and abs(p.roll - first.roll) < STILL_ROLL for p in poses[1:])


def judge(action: str, frames: Sequence[Image.Image], portrait: Sequence[float],
          threshold: float) -> float:
    """Raise LivenessFailed unless every frame shows one face, the frames show `action`
    and the face is the document's `portrait` (descriptor distance below `threshold`
    on a few frames). Returns the largest distance measured."""
    found = []
    for index, frame in enumerate(frames):
        try:
            found.append(faces.one_face(frame))
        except faces.FaceNotFound as exc:
            if exc.reason is faces.FaceReason.SEVERAL:
                raise LivenessFailed(Verdict.SEVERAL, f"frame {index + 1}: {exc}",
                                     frame=index + 1, faces=exc.count) from None
            raise LivenessFailed(Verdict.NO_FACE, f"frame {index + 1}: {exc}",
                                 frame=index + 1) from None
    poses = [pose(face) for face in found]
    # Descriptors (65 ms each) of the first and last frames: before and after the move,
    # when the face is nearest the document's frontal pose.
    worst = max(faces.distance(faces.descriptor(frames[i], found[i]), portrait)
                for i in {0, len(frames) - 1})
    if worst > threshold:
        raise LivenessFailed(Verdict.MISMATCH, "the face is not the one on the document")
    if still(poses):
        raise LivenessFailed(Verdict.STILL, "nothing moved between the frames: a still "
                             "picture")
    if not performed(action, poses):
        log.info("liveness: %s not seen; yaw %s pitch %s ear %s size %s", action,
                 *([round(getattr(p, m), 3) for p in poses]
                   for m in ("yaw", "pitch", "ear", "size")))
        raise LivenessFailed(Verdict.NOT_SEEN, f"the frames do not show {action}",
                             action=action)
    return worst
