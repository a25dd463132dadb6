"""Reading one MRZ place by its shape: ICAO 9303-3 §4.2 prints the zone in OCR-B, so
each character's glyph is known. A cell's ink, cut to its box and brought to a fixed
size, is compared with every OCR-B glyph of the MRZ alphabet the same way (correlation,
and how wide the glyph is for its height). Tesseract's stock model reads a run of
places as one word and may double or drop a glyph (a blurred 1 read as 17); a place
read alone cannot change the run's length. The check digits still judge the result.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_SIZE = (24, 32)  # width, height every glyph is compared at


def _normalised(ink: Image.Image) -> tuple[np.ndarray, float] | None:
    """Black-on-white L image -> its ink box at _SIZE (zero mean, unit norm) and the
    box's width over height; None without ink."""
    box = ink.point(lambda p: 255 - p).getbbox()
    if box is None:
        return None
    cut = ink.crop(box)
    pixels = 1.0 - np.asarray(cut.resize(_SIZE, Image.Resampling.BILINEAR),
                              dtype=np.float32) / 255.0
    pixels -= pixels.mean()
    norm = float(np.linalg.norm(pixels))
    if norm == 0.0:
        return None
    return pixels / norm, (box[2] - box[0]) / max(1, box[3] - box[1])


@lru_cache(maxsize=1)
def _templates() -> dict[str, tuple[np.ndarray, float]]:
    from portal.identity.specimen import OCR_B  # the font path lives with the renderer

    font = ImageFont.truetype(str(OCR_B), 96)
    out = {}
    for char in ALPHABET:
        canvas = Image.new("L", (140, 140), 255)
        ImageDraw.Draw(canvas).text((20, 10), char, font=font, fill=0)
        found = _normalised(canvas)
        assert found is not None
        out[char] = found
    return out


def read_cell(cell: Image.Image) -> str | None:
    """The OCR-B character a cell (black ink on white) shows best; None if no ink."""
    found = _normalised(cell)
    if found is None:
        return None
    pixels, aspect = found
    best, best_score = None, -np.inf
    for char, (template, width) in _templates().items():
        score = float((pixels * template).sum()) - 0.5 * abs(np.log(aspect / width))
        if score > best_score:
            best, best_score = char, score
    return best
