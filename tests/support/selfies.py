"""Selfie frames made from one portrait: a person turning their head, looking up,
blinking or coming closer, synthesised by geometric warps of the picture (no 3-D model:
a smooth one-sided squeeze moves the nose against the jaw line as a head turn does), and
the camera-like variations of one picture (scale, rotation, light, JPEG, blur) that the
face-match table of bench/identity.py measures.

Portraits: portal/identity/portraits.py's samples (Eileen Collins, NASA, public domain,
from scikit-image; Grace Hopper, U.S. Navy, public domain, from matplotlib).
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from portal.identity import faces, portraits

FRAME = (640, 480)  # what the signer's page sends (portal/web/capture.js)


def scene(portrait: Image.Image, size: tuple[int, int] = FRAME) -> Image.Image:
    """The portrait as a front camera frames a face: head and shoulders filling the
    picture's height, on a plain wall."""
    frame = Image.new("RGB", size, (186, 182, 172))
    scale = size[1] / portrait.height
    head = portrait.resize((round(portrait.width * scale), size[1]), Image.Resampling.LANCZOS)
    frame.paste(head, ((size[0] - head.width) // 2, 0))
    return frame


def _sample(pixels: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Bilinear sampling of `pixels` (H x W x 3) at source coordinates (sx, sy)."""
    h, w = pixels.shape[:2]
    sx = np.clip(sx, 0, w - 1.001)
    sy = np.clip(sy, 0, h - 1.001)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    p = pixels.astype(np.float32)
    top = p[y0, x0] * (1 - fx) + p[y0, x0 + 1] * fx
    bottom = p[y0 + 1, x0] * (1 - fx) + p[y0 + 1, x0 + 1] * fx
    mixed: np.ndarray = np.clip(top * (1 - fy) + bottom * fy, 0, 255).astype(np.uint8)
    return mixed


def _bump(t: np.ndarray) -> np.ndarray:
    """0 outside [0, 1], a smooth hump inside (peak 1 at the middle)."""
    inside = (t > 0) & (t < 1)
    return np.where(inside, np.sin(np.pi * np.clip(t, 0, 1)), 0.0)


def warp(frame: Image.Image, face: faces.Face, *, yaw: float = 0.0, pitch: float = 0.0
         ) -> Image.Image:
    """The head turned (`yaw` > 0: the nose towards the picture's right, the subject's
    left) or tilted (`pitch` > 0: looking up), as a fraction of the head's size."""
    pixels = np.asarray(frame.convert("RGB"))
    h, w = pixels.shape[:2]
    top, bottom = face.box[1], face.box[3]
    # The face between its jaw line's ends (which stay, as a turning head's outline
    # does), and a little taller than dlib's box (forehead, chin).
    jaw_left, jaw_right = face.landmarks[0][0], face.landmarks[16][0]
    hw, hh = (jaw_right - jaw_left) * 1.1, (bottom - top) * 1.5
    cx, cy = (jaw_left + jaw_right) / 2, (top + bottom) / 2
    x0, y0 = cx - hw / 2, cy - hh / 2 - (bottom - top) * 0.1
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tx, ty = (xs - x0) / hw, (ys - y0) / hh
    # Each output pixel reads the source shifted back: the middle moves, the edges stay.
    sx = xs - yaw * hw / 2 * _bump(tx) * _bump(ty) ** 0.5
    sy = ys + pitch * hh / 2 * _bump(ty) * _bump(tx) ** 0.5
    return Image.fromarray(_sample(pixels, sx, sy))


def blink(frame: Image.Image, face: faces.Face) -> Image.Image:
    """Both eyes closed: each eye painted over with the skin just below it, and a dark
    lash line across."""
    out = frame.copy()
    draw = ImageDraw.Draw(out)
    pixels = np.asarray(frame.convert("RGB"))
    for eye in (faces.RIGHT_EYE, faces.LEFT_EYE):
        pts = [face.landmarks[i] for i in eye]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        width = x1 - x0
        pad = width * 0.25
        skin_y = min(pixels.shape[0] - 1, round(y1 + width * 0.45))
        skin = pixels[skin_y, round(x0):round(x1) + 1].reshape(-1, 3).mean(axis=0)
        colour = tuple(int(c) for c in skin)
        draw.ellipse((x0 - pad, y0 - pad * 1.6, x1 + pad, y1 + pad * 1.2), fill=colour)
        mid = (y0 + y1) / 2 + width * 0.08
        draw.line((x0 - pad * 0.5, mid, x1 + pad * 0.5, mid), fill=(45, 35, 30),
                  width=max(1, round(width / 9)))
    return out.filter(ImageFilter.GaussianBlur(0.6))


def zoom(frame: Image.Image, face: faces.Face, factor: float) -> Image.Image:
    """The face `factor` times as large, about its centre (the person came closer)."""
    cx = (face.box[0] + face.box[2]) / 2
    cy = (face.box[1] + face.box[3]) / 2
    w, h = frame.size
    cw, ch = w / factor, h / factor
    left = min(max(0.0, cx - cw / 2), w - cw)
    top = min(max(0.0, cy - ch / 2), h - ch)
    return frame.resize(frame.size, Image.Resampling.BICUBIC,
                        box=(left, top, left + cw, top + ch))


def flat_move(frame: Image.Image, step: int) -> Image.Image:
    """A printed photo held up and moved: shifted, rolled, tilted (squeezed) and scaled
    as a flat sheet, a little more at each `step`."""
    w, h = frame.size
    squeeze = 1 - 0.04 * step  # the sheet turned about its vertical axis
    scale = 1 + 0.02 * step
    moved = frame.rotate(1.5 * step, resample=Image.Resampling.BICUBIC,
                         translate=(4 * step, -2 * step), fillcolor=(186, 182, 172))
    sheet = moved.resize((round(w * scale * squeeze), round(h * scale)),
                         Image.Resampling.BICUBIC)
    out = Image.new("RGB", (w, h), (186, 182, 172))
    out.paste(sheet, ((w - sheet.width) // 2, (h - sheet.height) // 2))
    return out


def noisy(frame: Image.Image, rng: random.Random, sigma: float = 3.0) -> Image.Image:
    """Sensor noise: every camera frame differs from the last even when nothing moves."""
    pixels = np.asarray(frame.convert("RGB")).astype(np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def jpeg(frame: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    frame.save(out, format="JPEG", quality=quality)
    return out.getvalue()


# Each challenge as a performance: what happens across an answer's frames.
_YAW_STEPS = (0.0, 0.0, 0.2, 0.4, 0.55, 0.55, 0.35, 0.15)
_PITCH_STEPS = (0.0, 0.0, 0.12, 0.22, 0.3, 0.3, 0.2, 0.08)
_ZOOM_STEPS = (1.0, 1.0, 1.08, 1.18, 1.3, 1.38, 1.4, 1.4)
_BLINK_STEPS = (False, False, False, True, True, False, False, False)


def performance(portrait: Image.Image, action: str, *, seed: int = 0,
                count: int = 8) -> list[Image.Image]:
    """`count` frames (at most 8) of the portrait's person doing `action`: one of
    turn-head-left, turn-head-right, look-up, blink, come-closer; or `still` (nothing
    moves but the sensor noise) or `flat` (a printed photo moved about)."""
    rng = random.Random(seed)
    return [noisy(frame, rng) for frame in _moves(portrait, action)[:count]]


def _moves(picture: Image.Image, action: str) -> list[Image.Image]:
    base = scene(picture)
    face = faces.one_face(base)
    frames = []
    for i in range(8):
        if action == "turn-head-left":
            frame = warp(base, face, yaw=_YAW_STEPS[i])
        elif action == "turn-head-right":
            frame = warp(base, face, yaw=-_YAW_STEPS[i])
        elif action == "look-up":
            frame = warp(base, face, pitch=_PITCH_STEPS[i])
        elif action == "blink":
            frame = blink(base, face) if _BLINK_STEPS[i] else base
        elif action == "come-closer":
            frame = zoom(base, face, _ZOOM_STEPS[i])
        elif action == "still":
            frame = base
        elif action == "flat":
            frame = flat_move(base, i)
        else:
            raise ValueError(f"no performance for {action!r}")
        frames.append(frame)
    return frames


@cache
def _sample_moves(name: str, action: str) -> tuple[Image.Image, ...]:
    return tuple(_moves(portraits.sample(name), action))


def answer(name: str, action: str, *, seed: int = 0) -> list[bytes]:
    """A challenge's answer as the page sends it: JPEG frames of the sample portrait
    `name` doing `action` (the moves computed once, the sensor noise new per seed)."""
    rng = random.Random(seed)
    return [jpeg(noisy(frame, rng)) for frame in _sample_moves(name, action)]


@dataclass(frozen=True)
class Variation:
    """A camera-like change of one picture (bench: same-person pairs)."""

    scale: float = 1.0
    rotation: float = 0.0  # degrees
    light: float = 1.0  # brightness factor
    quality: int = 90  # JPEG
    blur: float = 0.0  # Gaussian radius, px

    def apply(self, picture: Image.Image) -> Image.Image:
        out = picture.resize((round(picture.width * self.scale),
                              round(picture.height * self.scale)), Image.Resampling.BICUBIC)
        out = out.rotate(self.rotation, resample=Image.Resampling.BICUBIC, expand=False,
                         fillcolor=(186, 182, 172))
        out = ImageEnhance.Brightness(out).enhance(self.light)
        if self.blur:
            out = out.filter(ImageFilter.GaussianBlur(self.blur))
        return Image.open(io.BytesIO(jpeg(out, self.quality))).convert("RGB")


def variations(count: int, seed: int = 0) -> list[Variation]:
    """`count` random camera-like variations within what a phone's selfie does."""
    rng = random.Random(seed)
    return [Variation(scale=rng.uniform(0.8, 1.4), rotation=rng.uniform(-12, 12),
                      light=rng.uniform(0.55, 1.4), quality=rng.choice((40, 60, 75, 90)),
                      blur=rng.choice((0.0, 0.0, 0.8, 1.5, 2.2))) for _ in range(count)]


def several(portraits_: Sequence[Image.Image]) -> Image.Image:
    """Two people side by side in one frame."""
    heads = [p.resize((round(p.width * FRAME[1] / p.height), FRAME[1])) for p in portraits_]
    frame = Image.new("RGB", (sum(h.width for h in heads) + 20, FRAME[1]), (186, 182, 172))
    x = 0
    for head in heads:
        frame.paste(head, (x, 0))
        x += head.width + 20
    return frame


@cache
def portrait(name: str) -> Image.Image:
    """A sample portrait, loaded once (callers must not change it)."""
    return portraits.sample(name)
