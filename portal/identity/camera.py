"""A document side as a phone photographs it, for tests, the bench and testers: the
side on a table, tilted and seen at a slant (rotation, perspective), lit unevenly,
slightly out of focus, with sensor noise, saved as a JPEG. Every degradation is drawn
from `rng`, so a seed gives the same photograph again.

The ranges are those issue 17 asks the reference service to read through: ±7° of
rotation, a perspective of a few per cent, blur, noise, JPEG quality 60, a light
gradient.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from portal.identity.rectify import homography


@dataclass(frozen=True)
class Shot:
    """How one photograph was taken (kept with bench failures to reproduce them)."""

    rotation: float  # degrees, counter-clockwise
    slant: float  # perspective: the largest corner displacement, fraction of the size
    light: float  # darkest corner's brightness relative to the brightest, 0-1
    blur: float  # Gaussian radius in pixels
    noise: float  # standard deviation of the sensor noise, grey levels
    quality: int  # JPEG quality
    margin: float  # table visible around the document, fraction of its size


def random_shot(rng: random.Random, *, max_rotation: float = 7.0) -> Shot:
    return Shot(rotation=rng.uniform(-max_rotation, max_rotation),
                slant=rng.uniform(0.0, 0.04), light=rng.uniform(0.55, 0.95),
                blur=rng.uniform(0.3, 1.4), noise=rng.uniform(2.0, 9.0), quality=60,
                margin=rng.uniform(0.04, 0.12))


def photograph(png: bytes, shot: Shot, rng: random.Random) -> bytes:
    """The side (PNG bytes) photographed as `shot` says: JPEG bytes."""
    side = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = side.size
    pad_x, pad_y = round(width * shot.margin), round(height * shot.margin)
    table = tuple(rng.randrange(60, 140) for _ in range(3))
    canvas = Image.new("RGB", (width + 2 * pad_x, height + 2 * pad_y), table)
    canvas.paste(side, (pad_x, pad_y))
    # Perspective: each corner of the document moved inwards or outwards a little.
    corners: list[tuple[float, float]] = [
        (pad_x, pad_y), (pad_x + width, pad_y), (pad_x + width, pad_y + height),
        (pad_x, pad_y + height)]
    reach = shot.slant * max(width, height)
    moved = [(x + rng.uniform(-reach, reach), y + rng.uniform(-reach, reach))
             for x, y in corners]
    canvas = canvas.transform(canvas.size, Image.Transform.PERSPECTIVE,
                              homography(corners, moved), Image.Resampling.BICUBIC,
                              fillcolor=table)
    canvas = canvas.rotate(shot.rotation, Image.Resampling.BICUBIC, expand=True,
                           fillcolor=table)
    pixels = np.asarray(canvas, dtype=np.float32)
    rows, columns = pixels.shape[:2]
    # Light falling off linearly from a random corner, brightest at the opposite one.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    ramp = xx / columns * np.cos(angle) + yy / rows * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    pixels *= (shot.light + (1.0 - shot.light) * ramp)[..., None]
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    noisy = noisy.filter(ImageFilter.GaussianBlur(shot.blur))
    grain = np.random.default_rng(rng.randrange(1 << 32)).normal(
        0.0, shot.noise, (rows, columns, 1)).astype(np.float32)
    final = np.clip(np.asarray(noisy, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(final).save(out, format="JPEG", quality=shot.quality)
    return out.getvalue()
