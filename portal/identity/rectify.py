"""Find the machine readable zone in a photograph and straighten it (issue 17): the
zone's glyphs located as connected components of ink under an evened-out light, the
skew estimated from their centres, its rows picked by the ICAO 9303 shape (2 or 3
rows of 44 or 30 places, every place inked, fillers included: 9303-3 §4.2), and the
quadrilateral its rows span mapped onto an upright fixed-pitch zone (a homography:
rotation and perspective at once).

Arrays come from numpy and scipy.ndimage (labelling, separable min/max filters): the
same work in pure Python took seconds per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from portal.identity.mrz import DocumentFormat

# The upright zone's geometry: ICAO 9303-3 §4.2 OCR-B at 10 characters per inch and
# about 4.3 mm between baselines, drawn at 12 px/mm as the specimens are.
PITCH = 30.48
LINE = 51.6
MARGIN = 40
_INK = 0.72  # darker than 72 % of the local paper: ink (a pale watermark is not)
_WORK = 1400  # the longer side a photograph is brought to before the search


class ZoneNotFound(ValueError):
    """No 2 x 44 or 3 x 30 block of glyphs in the picture."""


@dataclass(frozen=True)
class _Glyph:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def even_light(gray: np.ndarray, size: int) -> np.ndarray:
    """The page's brightness divided out: each pixel over the local paper (a grey
    closing, wider than a glyph, removes the ink): 1.0 paper, small values ink."""
    smooth = ndimage.uniform_filter(gray, 3)
    paper = ndimage.minimum_filter(ndimage.maximum_filter(smooth, size), size)
    flat: np.ndarray = smooth / np.maximum(paper, 1.0)
    return flat


def _glyphs(ink: np.ndarray) -> list[_Glyph]:
    labels, _count = ndimage.label(ink)
    out = []
    for box in ndimage.find_objects(labels):
        if box is None:
            continue
        ys, xs = box
        glyph = _Glyph(xs.start, ys.start, xs.stop, ys.stop)
        if glyph.height >= 6 and xs.stop - xs.start <= 3 * glyph.height:
            out.append(glyph)
    return out


def _sized(row: list[_Glyph], low: float) -> list[_Glyph]:
    """A row's glyphs of a glyph's height: at least `low` of the row's usual height
    (specks), at most 1.6 times it (a glyph run into the document's edge)."""
    usual = float(np.percentile([g.height for g in row], 80))  # letters, not fillers
    return [g for g in row if low * usual <= g.height <= 1.6 * usual]


def _skew(glyphs: list[_Glyph], bin_size: float) -> float:
    """The angle (radians) at which the glyph centres stack into the sharpest rows."""
    x = np.array([g.cx for g in glyphs])
    y = np.array([g.cy for g in glyphs])
    best, best_score = 0.0, -1.0
    for degrees in np.arange(-10.0, 10.01, 0.25):
        angle = math.radians(degrees)
        rows = np.floor((y * math.cos(angle) - x * math.sin(angle)) / bin_size)
        _, counts = np.unique(rows, return_counts=True)
        score = float((counts.astype(float) ** 2).sum())
        if score > best_score:
            best, best_score = angle, score
    return best


def _in_rows(glyphs: list[_Glyph], angle: float, height: float) -> list[_Glyph]:
    """The glyphs with a neighbour beside them along `angle` (within two heights, at
    about their level): MRZ places sit a pitch apart, while the specks of a
    document's edge stack up and down and, taken for glyphs, bridge two lines."""
    x = np.array([g.cx for g in glyphs])
    y = np.array([g.cy for g in glyphs])
    level = y * math.cos(angle) - x * math.sin(angle)
    along = x * math.cos(angle) + y * math.sin(angle)
    near = ((np.abs(level[:, None] - level[None, :]) < 0.35 * height)
            & (np.abs(along[:, None] - along[None, :]) < 2.0 * height))
    np.fill_diagonal(near, False)
    kept = np.flatnonzero(near.any(axis=1))
    return [glyphs[int(i)] for i in kept]


def _rows(glyphs: list[_Glyph], angle: float, height: float) -> list[list[_Glyph]]:
    """Glyphs grouped into text rows along `angle`, top to bottom, each left to right."""
    def level(g: _Glyph) -> float:
        return g.cy * math.cos(angle) - g.cx * math.sin(angle)

    ordered = sorted(glyphs, key=level)
    rows: list[list[_Glyph]] = []
    last = -math.inf
    for glyph in ordered:
        here = level(glyph)
        if here - last > height * 0.45:
            rows.append([])
        rows[-1].append(glyph)
        last = here
    return [sorted(row, key=lambda g: g.cx * math.cos(angle) + g.cy * math.sin(angle))
            for row in rows]


def _zone_rows(rows: list[list[_Glyph]], fmt: DocumentFormat, angle: float
               ) -> list[list[_Glyph]]:
    """The lowest `count` consecutive rows shaped like MRZ lines: about `width` glyphs
    (a blurred pair may merge, a broken glyph split) over the same extent."""
    count, width = fmt.shape

    def along(g: _Glyph) -> float:
        return g.cx * math.cos(angle) + g.cy * math.sin(angle)

    def fits(row: list[_Glyph]) -> bool:
        tall = _sized(row, 0.5)
        return 0.7 * width <= len(tall) <= 1.5 * width

    def level(row: list[_Glyph]) -> float:
        return float(np.median([g.cy * math.cos(angle) - g.cx * math.sin(angle)
                                for g in row]))

    lines = [row for row in rows if fits(row)]  # a stray speck is a row of its own
    for end in range(len(lines), count - 1, -1):
        group = lines[end - count:end]
        spans = [(along(row[0]), along(row[-1])) for row in group]
        lengths = [b - a for a, b in spans]
        if max(lengths) - min(lengths) > 0.12 * max(lengths):
            continue
        if max(abs(a - spans[0][0]) for a, _ in spans) > 0.08 * max(lengths):
            continue
        gaps = np.diff([level(row) for row in group])
        # 9303-3 §4.2: the lines are evenly spaced, about 1.7 glyph heights apart.
        if gaps.max() > 1.35 * gaps.min() or gaps.max() > 0.12 * max(lengths):
            continue
        return group
    raise ZoneNotFound(f"no {fmt.value.upper()} machine readable zone was found")


def _line_fit(row: list[_Glyph]) -> tuple[float, float]:
    """y = a * x + b through the centres of a row's full-height glyphs."""
    tall = _sized(row, 0.7)
    xs = np.array([g.cx for g in tall])
    ys = np.array([g.cy for g in tall])
    a, b = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def upright_zone(image: Image.Image, fmt: DocumentFormat) -> Image.Image:
    """The MRZ of a photograph, upright and at the specimens' scale, ink black on white
    (grey levels kept for the reader's own threshold)."""
    scale = min(1.0, _WORK / max(image.size))
    work = image.convert("L")
    if scale < 1.0:
        work = work.resize((round(work.width * scale), round(work.height * scale)),
                           Image.Resampling.BILINEAR)
    gray = np.asarray(work, dtype=np.float32)
    size = max(15, round(max(gray.shape) / 35))  # wider than a glyph at any framing
    flat = even_light(gray, size)
    glyphs = _glyphs(flat < _INK)
    if len(glyphs) < fmt.shape[0] * fmt.shape[1] * 0.7:
        raise ZoneNotFound("too little print for a machine readable zone")
    heights = np.array([g.height for g in glyphs])
    height = float(np.median(heights[heights >= np.percentile(heights, 40)]))
    angle = _skew(glyphs, height / 2)
    rows = _zone_rows(_rows(_in_rows(glyphs, angle, height), angle, height), fmt, angle)
    count, width = fmt.shape
    source: list[tuple[float, float]] = []
    target: list[tuple[float, float]] = []
    cleaned = [_clean(found) for found in rows]
    model = next((row for row in cleaned if len(row) == width), None)
    complete = model is not None
    for index, row in enumerate(cleaned):
        a, b = _line_fit(row)
        places = _places(row, width, model)
        # OCR-B is monospaced with each glyph centred in its place: a row whose every
        # place was found gives every centre; otherwise its first and last glyphs.
        for place, x in places:
            source.append((x / scale, (a * x + b) / scale))
            target.append((MARGIN + PITCH * (place + 0.5), MARGIN + LINE * (index + 0.5)))
    flat_image = Image.fromarray(np.clip(flat * 255.0, 0, 255).astype(np.uint8))
    if scale < 1.0:
        full = np.asarray(image.convert("L"), dtype=np.float32)
        flat_image = Image.fromarray(np.clip(even_light(full, round(size / scale)) * 255.0,
                                             0, 255).astype(np.uint8))
    size_out = (round(2 * MARGIN + PITCH * width), round(2 * MARGIN + LINE * count))
    zone = flat_image.transform(size_out, Image.Transform.PERSPECTIVE,
                                homography(source, target, projective=complete),
                                Image.Resampling.BICUBIC,
                                fillcolor=255)
    # Whatever lies beyond the zone's places (the document's edge, the table) is not
    # the zone's: white, so that the reader's fixed-pitch cells start and end right.
    paper = Image.new("L", size_out, 255)
    box = (round(MARGIN - PITCH * 0.3), round(MARGIN - LINE * 0.2),
           round(MARGIN + PITCH * (width + 0.3)), round(MARGIN + LINE * (count + 0.2)))
    paper.paste(zone.crop(box), box[:2])
    return paper


def _clean(row: list[_Glyph]) -> list[_Glyph]:
    """A row's glyphs without specks (short ones, or beyond its ends further than two
    pitches from their neighbour), the pieces of a glyph the threshold broke merged."""
    tall = _sized(row, 0.35)
    pitch = float(np.median(np.diff([g.cx for g in tall])))
    while len(tall) > 2 and tall[1].cx - tall[0].cx > 2 * pitch:
        tall = tall[1:]
    while len(tall) > 2 and tall[-1].cx - tall[-2].cx > 2 * pitch:
        tall = tall[:-1]
    merged = [tall[0]]
    for glyph in tall[1:]:
        last = merged[-1]
        if glyph.cx - last.cx < 0.55 * pitch:
            merged[-1] = _Glyph(min(last.x0, glyph.x0), min(last.y0, glyph.y0),
                                max(last.x1, glyph.x1), max(last.y1, glyph.y1))
        else:
            merged.append(glyph)
    return merged


def _places(row: list[_Glyph], width: int, model: list[_Glyph] | None = None
            ) -> list[tuple[int, float]]:
    """(place, centre x) of a clean row's glyphs: every place when there are `width`
    of them; else, beside a `model` row whose every place was found (the zone's lines
    share one pitch, 9303-3 §4.2), each glyph that falls on a place of the model's
    (a speck past the line's end, or a lost filler, then moves nothing); else the
    first and the last."""
    if len(row) == width:
        return [(place, g.cx) for place, g in enumerate(row)]
    if model is None:
        return [(0, row[0].cx), (width - 1, row[-1].cx)]
    centres = np.array([g.cx for g in model])
    pitch = float(np.median(np.diff(centres)))
    shift = row[0].cx - model[0].cx  # the skew moves a lower line sideways a little
    found: dict[int, float] = {}
    for glyph in row:
        x = glyph.cx - shift
        if not centres[0] - pitch / 2 < x < centres[-1] + pitch / 2:
            continue
        position = float(np.interp(x, centres, np.arange(width)))
        place = round(position)
        if abs(position - place) < 0.3 and place not in found:
            found[place] = glyph.cx
    return sorted(found.items())


def homography(source: Sequence[tuple[float, float]],
               target: Sequence[tuple[float, float]], *, projective: bool = True
               ) -> list[float]:
    """PIL's PERSPECTIVE data mapping output (target) points to input (source) ones, in
    the least-squares sense. The perspective terms only when a whole row of places
    was found: from the rows' ends alone (two or three lines close together) they are
    ill-conditioned, and an affine map is the safer guess."""
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    matrix = np.array(rows, dtype=float)
    if not projective:
        matrix[:, 6:] = 0.0
    solution, *_ = np.linalg.lstsq(matrix, np.array(values, dtype=float), rcond=None)
    return [float(c) for c in solution]


def straighten(image: Image.Image) -> Image.Image:
    """A printed side upright for full-page OCR: the light evened out and the skew of
    its text rows (as `upright_zone` finds it) turned back; the page as it is when it
    holds too little print to tell."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    size = max(15, round(max(gray.shape) / 35))
    flat = even_light(gray, size)
    page = Image.fromarray(np.clip(flat * 255.0, 0, 255).astype(np.uint8))
    glyphs = _glyphs(flat < _INK)
    if len(glyphs) < 20:
        return page
    heights = np.array([g.height for g in glyphs])
    height = float(np.median(heights[heights >= np.percentile(heights, 40)]))
    angle = _skew(glyphs, height / 2)
    return page.rotate(math.degrees(angle), Image.Resampling.BICUBIC, expand=True,
                       fillcolor=255)
