"""Faces in pictures: detection, the 68 facial landmarks and the 128-d descriptor that
tells whether two faces are one person, with dlib (the `dlib-bin` wheel) and the models
the `face-recognition-models` package ships inside it (nothing is downloaded).

- detection: dlib's HOG + linear SVM frontal face detector (Dalal & Triggs 2005), run on
  the picture scaled to a small width (about 8 ms a 320 px frame on one core);
- landmarks: the 68-point iBUG 300-W layout (Kazemi & Sullivan 2014, ERT regression);
- descriptor: dlib's ResNet face recognition model (99.38% on LFW at a 0.6 Euclidean
  distance, http://dlib.net/face_recognition.py.html), about 65 ms a face.
"""

from __future__ import annotations

import enum
import importlib.resources
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import dlib
import numpy as np
from PIL import Image

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # left, top, right, bottom

DESCRIPTOR_SIZE = 128
# iBUG 300-W 68-point indices (0-based) used by the liveness checks.
JAW = range(0, 17)
NOSE_TIP = 30
RIGHT_EYE = range(36, 42)  # the subject's right eye: on the picture's left
LEFT_EYE = range(42, 48)
MOUTH = range(48, 68)


class FaceReason(enum.StrEnum):
    NONE = "none"
    SEVERAL = "several"


class FaceNotFound(ValueError):
    """No usable face, or more than one where one is expected."""

    def __init__(self, reason: FaceReason, message: str, count: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.count = count


@dataclass(frozen=True)
class Face:
    box: Box  # in the picture's pixels
    landmarks: tuple[Point, ...]  # 68 points, in the picture's pixels
    shape: Any = field(compare=False, repr=False)  # dlib.full_object_detection

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        return self.width * (self.box[3] - self.box[1])


class _Models:
    """dlib's detector, landmark predictor and recognition net, loaded once per process
    (the recognition net is 22 MB); the net is used under a lock (one dlib graph)."""

    def __init__(self) -> None:
        models = importlib.resources.files("face_recognition_models") / "models"
        with importlib.resources.as_file(models / "shape_predictor_68_face_landmarks.dat") as p:
            self.predictor = dlib.shape_predictor(str(p))
        with importlib.resources.as_file(models / "dlib_face_recognition_resnet_model_v1.dat"
                                         ) as p:
            self.recognizer = dlib.face_recognition_model_v1(str(p))
        self.detector = dlib.get_frontal_face_detector()
        self.lock = threading.Lock()


@cache
def _models() -> _Models:
    return _Models()


def rgb(picture: Image.Image) -> np.ndarray:
    """The picture as the contiguous 8-bit RGB array dlib reads."""
    return np.ascontiguousarray(np.asarray(picture.convert("RGB"), dtype=np.uint8))


def detect(picture: Image.Image, *, width: int = 320, upsample: int = 0) -> list[Face]:
    """Every face dlib's HOG detector finds in `picture` scaled to `width` pixels wide
    (never enlarged), largest first; landmarks placed on the full-size picture."""
    models = _models()
    full = rgb(picture)
    scale = min(1.0, width / picture.width)
    small = full if scale == 1.0 else rgb(picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
        Image.Resampling.BILINEAR))
    faces = []
    for rect in models.detector(small, upsample):
        box = dlib.rectangle(round(rect.left() / scale), round(rect.top() / scale),
                             round(rect.right() / scale), round(rect.bottom() / scale))
        shape = models.predictor(full, box)
        points = tuple((float(p.x), float(p.y)) for p in shape.parts())
        faces.append(Face((box.left(), box.top(), box.right(), box.bottom()), points, shape))
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def one_face(picture: Image.Image, *, width: int = 320, upsample: int = 0) -> Face:
    """The one face in a selfie frame; FaceNotFound when there is none or several."""
    faces = detect(picture, width=width, upsample=upsample)
    if not faces:
        raise FaceNotFound(FaceReason.NONE, "no face was found in the picture")
    if len(faces) > 1:
        raise FaceNotFound(FaceReason.SEVERAL, f"{len(faces)} faces are in the picture",
                           len(faces))
    return faces[0]


def portrait(picture: Image.Image) -> Face:
    """The document's portrait: the largest face on its photo side (a card may print a
    small second "ghost" image of the holder). Detected at 640 px with one upsampling:
    an ID-1 portrait is about a quarter of the card's width."""
    faces = detect(picture, width=640, upsample=1)
    if not faces:
        raise FaceNotFound(FaceReason.NONE, "no portrait was found on the document")
    return faces[0]


def descriptor(picture: Image.Image, face: Face) -> tuple[float, ...]:
    """dlib's 128-d face descriptor of `face` in `picture` (the picture it was found in)."""
    models = _models()
    with models.lock:
        vector = models.recognizer.compute_face_descriptor(rgb(picture), face.shape)
    return tuple(float(v) for v in vector)


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean distance between two descriptors: below about 0.6, one person (dlib)."""
    if len(a) != DESCRIPTOR_SIZE or len(b) != DESCRIPTOR_SIZE:
        raise ValueError("face descriptors have 128 values")
    return math.dist(a, b)
