"""MRZ in photographs (issue 17): a TD1 back and a TD3 data page photographed as a
phone would (portal/identity/camera.py: tilted, at a slant, unevenly lit, blurred,
noisy, JPEG 60) are found, straightened and read; a picture nothing can be read from
asks for a better one and never blames the document. A handful of OCR runs."""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from portal.identity import camera, ocr, rectify
from portal.identity.mrz import DocumentFormat, MrzInvalid, MrzReason
from portal.identity.specimen import Side
from tests.support.identity_fixtures import make_specimen

SHOT = camera.Shot(rotation=6.5, slant=0.03, light=0.6, blur=1.0, noise=6.0, quality=60,
                   margin=0.08)


def _photo(fmt: DocumentFormat, side: Side, rotation: float, seed: int, slant: float = 0.03
           ) -> tuple[tuple[str, ...], bytes]:
    doc = make_specimen(fmt, surname="O'Neill-Dubois", given_names="Zoë Anna", seed=seed,
                        portrait=None)
    shot = camera.Shot(**{**SHOT.__dict__, "rotation": rotation, "slant": slant})
    return doc.mrz_lines, camera.photograph(doc.images[side], shot, random.Random(seed))


@pytest.mark.parametrize(("fmt", "side", "rotation"), [
    (DocumentFormat.TD1, Side.BACK, 6.5), (DocumentFormat.TD3, Side.DATA_PAGE, -7.0)])
def test_a_photographed_zone_is_straightened_and_read(fmt: DocumentFormat, side: Side,
                                                      rotation: float) -> None:
    lines, photo = _photo(fmt, side, rotation, seed=11)
    picture = ocr.load_image(photo)
    # Before issue 17 the zone was looked for as it lay: a tilted one was not found.
    with pytest.raises(MrzInvalid):
        ocr._read_binary(ocr.binarise(ocr._zone(picture, fmt)), fmt, [])
    zone = rectify.upright_zone(picture, fmt)
    count, width = fmt.shape
    assert zone.size == (round(2 * rectify.MARGIN + rectify.PITCH * width),
                         round(2 * rectify.MARGIN + rectify.LINE * count))
    assert lines in [r.lines for r in ocr.read_mrz(photo, fmt).readings]


def test_the_skew_is_measured_from_the_glyphs() -> None:
    """The angle at which the glyph centres stack into rows is the photograph's tilt
    (no perspective here: a slant tilts the rows too)."""
    _, photo = _photo(DocumentFormat.TD3, Side.DATA_PAGE, 4.0, seed=5, slant=0.0)
    gray = np.asarray(Image.open(io.BytesIO(photo)).convert("L"), dtype=np.float32)
    glyphs = rectify._glyphs(rectify.even_light(gray, 40) < rectify._INK)
    heights = sorted(g.height for g in glyphs)
    angle = rectify._skew(glyphs, heights[len(heights) * 3 // 4] / 2)
    # PIL turns counter-clockwise: rows then fall to the right, a negative image slope.
    assert math.degrees(angle) == pytest.approx(-4.0, abs=0.3)


def test_an_unreadable_picture_asks_for_a_better_one() -> None:
    doc = make_specimen(DocumentFormat.TD3, seed=2, portrait=None)
    blurred = Image.open(io.BytesIO(doc.images[Side.DATA_PAGE])).filter(
        ImageFilter.GaussianBlur(6))
    with pytest.raises(MrzInvalid) as caught:
        ocr.read_mrz(blurred.convert("RGB"), DocumentFormat.TD3)
    assert caught.value.reason is MrzReason.UNREADABLE  # never "damaged or not genuine"


def test_a_tesseract_row_without_a_box_is_skipped() -> None:
    header = "\t".join(["level", "page_num", "block_num", "par_num", "line_num", "word_num",
                        "left", "top", "width", "height", "conf", "text"])
    good = "5\t1\t1\t1\t1\t1\t10\t20\t30\t12\t96.1\tMARTIN"
    torn = "5\t1\t1\t1\t1\t2\t10\t\t30\t12\t90.0\tDUPONT"  # a box cell lost
    assert list(ocr._tsv_words("\n".join((header, torn, good)))) == [
        ("MARTIN", (10, 20, 40, 32))]
