"""Reading ID document images with Debian's tesseract (stock English model).

The MRZ: the zone is found by projection (its lines are the lowest wide text lines of
the image), each line is cut into its fixed-pitch character cells (ICAO 9303-3 §4.2:
every place holds one printed glyph, fillers included), filler cells are recognised by
their shape against an OCR-B '<', and tesseract reads what is left, one word per run
of non-filler cells. Tesseract's stock model reads runs of '<' badly (as 'K', or drops
some), so this keeps it away from them; its answer is then repaired by layout and
accepted only when every check digit verifies (mrz.read).

The visual zone (the front of a card, the top of a data page): tesseract's full-page
mode; the service looks for the MRZ's values in the words.

Photographs: the zone is first found and straightened (rectify.py: rotation up to
10 degrees, perspective, uneven light); glare, folds and worn print are a vendor's
provider's business.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from portal.identity import mrz, ocrb, rectify
from portal.identity.mrz import DocumentFormat, MrzInvalid, MrzReason

TESSERACT = "tesseract"
MRZ_WHITELIST = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
TIMEOUT = 30.0
# One thread per tesseract: the portal reads several signers' pictures at once, and
# OpenMP's spinning threads then cost several times the CPU (tesseract-ocr/tesseract
# issue 3109: single-threaded instances in parallel are the fastest).
_THREADS = {"OMP_THREAD_LIMIT": "1"}


class OcrUnavailable(RuntimeError):
    """The tesseract binary or its English model is missing."""


class ImageInvalid(ValueError):
    """Bytes that are not a PNG or JPEG image we can read."""


@dataclass(frozen=True)
class MrzReading:
    readings: tuple[mrz.Mrz, ...]  # every reading the check digits allow, OCR's first
    raw_lines: tuple[str, ...]  # what the OCR gave, before repair
    seconds: float  # time spent in tesseract
    # Per line, the places where tesseract and the OCR-B shapes read the same ('?' else).
    agreed: tuple[str, ...] = ()
    swaps: tuple[int, ...] = ()  # per reading, the look-alikes swapped to verify it

    @property
    def mrz(self) -> mrz.Mrz:
        return self.readings[0]


def load_image(data: bytes) -> Image.Image:
    """Decode PNG or JPEG bytes (nothing else), refusing oversized images."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise ImageInvalid("no image data")
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")):
        raise ImageInvalid("images must be PNG or JPEG")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "JPEG"):
            raise ImageInvalid("images must be PNG or JPEG")
        if image.width * image.height > MAX_PIXELS:
            raise ImageInvalid("the image has too many pixels")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageInvalid(f"undecodable image: {exc}") from exc
    return image.convert("RGB")


def _tesseract(image: Image.Image, *args: str) -> tuple[str, float]:
    """Run the tesseract binary on a PNG given on stdin; answer its text and time."""
    if shutil.which(TESSERACT) is None:
        raise OcrUnavailable("tesseract is not installed (Debian package tesseract-ocr)")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    started = time.monotonic()
    try:
        done = subprocess.run([TESSERACT, "stdin", "stdout", "-l", "eng", *args],
                              input=buffer.getvalue(), capture_output=True, timeout=TIMEOUT,
                              check=False, env={**os.environ, **_THREADS})
    except subprocess.TimeoutExpired as exc:
        raise OcrUnavailable("tesseract took too long") from exc
    if done.returncode != 0:
        raise OcrUnavailable("tesseract failed: "
                             + done.stderr.decode(errors="replace").strip()[-300:])
    return done.stdout.decode(errors="replace"), time.monotonic() - started


def _otsu(gray: Image.Image) -> int:
    """Otsu's threshold from the histogram (a pale watermark falls on the light side)."""
    histogram = gray.histogram()
    total = sum(histogram)
    sum_all = sum(i * h for i, h in enumerate(histogram))
    weight_bg = sum_bg = 0.0
    best, threshold = -1.0, 128
    for level in range(256):
        weight_bg += histogram[level]
        if weight_bg == 0 or weight_bg == total:
            continue
        sum_bg += level * histogram[level]
        mean_bg = sum_bg / weight_bg
        mean_fg = (sum_all - sum_bg) / (total - weight_bg)
        between = weight_bg * (total - weight_bg) * (mean_bg - mean_fg) ** 2
        if between > best:
            best, threshold = between, level
    return threshold


def binarise(image: Image.Image) -> Image.Image:
    """Black ink (0) on white (255)."""
    gray = image.convert("L")
    threshold = _otsu(gray)
    return gray.point(lambda p: 0 if p <= threshold else 255)


def _runs(counts: Sequence[int], minimum: int) -> list[tuple[int, int]]:
    """Maximal index runs [start, end) where counts > minimum."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, value in enumerate(counts):
        if value > minimum and start is None:
            start = i
        elif value <= minimum and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(counts)))
    return runs


def _row_ink(binary: Image.Image) -> list[int]:
    data = binary.tobytes()
    width = binary.width
    return [data[y * width:(y + 1) * width].count(0) for y in range(binary.height)]


def _column_ink(binary: Image.Image) -> list[int]:
    return _row_ink(binary.transpose(Image.Transpose.ROTATE_90))[::-1]


@lru_cache(maxsize=4)
def _filler_template(size: int) -> Image.Image:
    """An OCR-B '<' cut to its ink and scaled to size x size, for shape comparison."""
    from portal.identity.specimen import OCR_B  # the font path lives with the renderer

    font = ImageFont.truetype(str(OCR_B), 96)
    canvas = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(canvas).text((20, 10), mrz.FILLER, font=font, fill=0)
    box = canvas.point(lambda p: 255 - p).getbbox()
    assert box is not None
    return canvas.crop(box).resize((size, size)).point(lambda p: 0 if p < 128 else 255)


def _looks_like_filler(cell: Image.Image) -> bool:
    """Compare a cell's ink (cut to its box) with the '<' glyph: overlap / union."""
    box = cell.point(lambda p: 255 - p).getbbox()
    if box is None:
        return False
    width, height = box[2] - box[0], box[3] - box[1]
    template = _filler_template(24)
    glyph = cell.crop(box).resize((24, 24)).point(lambda p: 0 if p < 128 else 255)
    a, b = glyph.tobytes(), template.tobytes()
    both = sum(1 for x, y in zip(a, b, strict=True) if x == 0 and y == 0)
    either = sum(1 for x, y in zip(a, b, strict=True) if x == 0 or y == 0)
    # '<' is about as wide as it is high; K, X and friends are taller than wide.
    return either > 0 and both / either > 0.6 and width > 0.6 * height


@dataclass(frozen=True)
class _Line:
    top: int
    bottom: int
    cells: list[tuple[int, int]]  # x ranges of the glyphs, one per character place


def _find_mrz_lines(binary: Image.Image, fmt: DocumentFormat) -> list[_Line]:
    count, width = fmt.shape
    rows = _runs(_row_ink(binary), max(2, binary.width // 400))
    candidates: list[_Line] = []
    for top, bottom in rows:
        if bottom - top < 8:
            continue
        strip = binary.crop((0, top, binary.width, bottom))
        ink = _column_ink(strip)
        glyphs = _runs(ink, 0)
        if len(glyphs) < width * 0.8 or glyphs[-1][1] - glyphs[0][0] < binary.width * 0.5:
            continue
        candidates.append(_Line(top, bottom, _cells(_split_touching(glyphs, ink, width),
                                                    width)))
    lines = candidates[-count:]
    if len(lines) != count or any(len(line.cells) != width for line in lines):
        raise MrzInvalid(MrzReason.UNREADABLE, f"no {fmt.value.upper()} machine readable "
                         "zone was found in the image")
    return lines


def _split_touching(glyphs: list[tuple[int, int]], ink: list[int], width: int
                    ) -> list[tuple[int, int]]:
    """Neighbours a blur made touch, cut apart at their thinnest column: a run wider
    than 1.25 places holds two glyphs or more (the pitch is fixed, 9303-3 §4.2)."""
    pitch = (glyphs[-1][1] - glyphs[0][0]) / width
    out: list[tuple[int, int]] = []
    pending = list(glyphs)
    while pending:
        a, b = pending.pop(0)
        margin = round(pitch * 0.3)
        if b - a <= 1.25 * pitch or b - a <= 2 * margin + 1:
            out.append((a, b))
            continue
        cut = min(range(a + margin, b - margin), key=lambda x: ink[x])
        pending[:0] = [(a, cut), (cut + 1, b)]
    return out


def _cells(glyphs: list[tuple[int, int]], width: int) -> list[tuple[int, int]]:
    """Glyph x ranges -> one range per character place, by the fixed pitch.
    Pieces of one glyph are merged; a place with no ink stays empty (width 0)."""
    centres = [(a + b) / 2 for a, b in glyphs]
    pitch = (centres[-1] - centres[0]) / (width - 1)
    if pitch <= 0:
        return []
    places: list[list[tuple[int, int]]] = [[] for _ in range(width)]
    for (a, b), centre in zip(glyphs, centres, strict=True):
        index = round((centre - centres[0]) / pitch)
        if 0 <= index < width:
            places[index].append((a, b))
    cells = []
    for index, parts in enumerate(places):
        if parts:
            cells.append((min(a for a, _ in parts), max(b for _, b in parts)))
        else:
            x = round(centres[0] + index * pitch)
            cells.append((x, x))
    return cells


def _zone(image: Image.Image, fmt: DocumentFormat) -> Image.Image:
    """The lower part of the side, where ICAO 9303 puts the MRZ."""
    fraction = 0.45 if fmt is DocumentFormat.TD1 else 0.35
    top = round(image.height * (1 - fraction))
    return image.crop((0, top, image.width, image.height))


def _prepared(image: Image.Image, fmt: DocumentFormat) -> Iterator[Image.Image]:
    """The zone as each attempt sees it, black on white: found and straightened in the
    photograph (rectify.py: rotation, perspective, uneven light), then the lower part
    of the image as it is (a scan whose zone the search missed)."""
    with contextlib.suppress(rectify.ZoneNotFound):
        yield binarise(rectify.upright_zone(image, fmt))
    yield binarise(_zone(image, fmt))


def read_mrz(data: bytes | Image.Image, fmt: DocumentFormat) -> MrzReading:
    """The MRZ of a TD1 back or a TD3 data page, every check digit verified.

    Each attempt of `_prepared` in turn; the first whose reading verifies wins. When
    none does, the check digits are blamed (BAD_CHECK_DIGIT: the document may be
    damaged or forged) only after a clean read: two attempts read the very same
    characters, each already fitting its place (ICAO 9303 layout). Anything else is
    UNREADABLE, which asks the signer for a better picture, never blames them.
    """
    image = data if isinstance(data, Image.Image) else load_image(data)
    raws: list[tuple[str, ...]] = []
    failures: list[MrzInvalid] = []
    seconds = 0.0
    for binary in _prepared(image, fmt):
        try:
            reading = _read_binary(binary, fmt, raws)
            return replace(reading, seconds=reading.seconds + seconds)
        except MrzInvalid as exc:
            failures.append(exc)
    clean = [raw for raw in raws if raws.count(raw) > 1 and _fits_layout(raw, fmt)]
    if clean and any(f.reason is MrzReason.BAD_CHECK_DIGIT for f in failures):
        raise next(f for f in failures if f.reason is MrzReason.BAD_CHECK_DIGIT)
    raise MrzInvalid(MrzReason.UNREADABLE, "the machine readable zone could not be read: "
                     "take a sharper photo, flat and well lit")


def _fits_layout(raw: tuple[str, ...], fmt: DocumentFormat) -> bool:
    """Every character already what its place holds (nothing for `repair` to do)."""
    try:
        return mrz.repair(raw, fmt) == raw
    except MrzInvalid:
        return False


def _read_binary(binary: Image.Image, fmt: DocumentFormat,
                 raws: list[tuple[str, ...]]) -> MrzReading:
    """One attempt on a binarised zone: cells, fillers by shape, tesseract for the
    rest; each assembled reading goes to `raws`."""
    lines = _find_mrz_lines(binary, fmt)
    pad = 6
    masked = binary.copy()
    draw = ImageDraw.Draw(masked)
    runs_per_line: list[list[tuple[int, int]]] = []
    for line in lines:
        filler = [
            _looks_like_filler(binary.crop((a, line.top, b, line.bottom))) if b > a else False
            for a, b in line.cells]
        for (a, b), is_filler in zip(line.cells, filler, strict=True):
            if is_filler:
                draw.rectangle((a, line.top, b, line.bottom), fill=255)
        runs_per_line.append(_runs([0 if f else 1 for f in filler], 0))
    top, bottom = lines[0].top - pad * 3, lines[-1].bottom + pad * 3
    crop = masked.crop((0, max(0, top), masked.width, min(masked.height, bottom)))
    whitelist = f"tessedit_char_whitelist={MRZ_WHITELIST}"
    text, seconds = _tesseract(crop, "--psm", "6", "-c", whitelist)
    raw = [line for line in text.splitlines() if line.strip()]
    if len(raw) != len(lines):
        raw = [""] * len(lines)  # lines run together: every run is read alone below
    choices: list[list[str]] = []  # per line, the readings worth trying
    agreed: list[str] = []
    for line, read_line, runs in zip(lines, raw, runs_per_line, strict=True):
        words = _words_for_runs(read_line, runs) if read_line else [None] * len(runs)
        per_run: list[list[str]] = []
        by_shape: list[str] = []
        same = [mrz.FILLER] * len(line.cells)
        for index, (a, b) in enumerate(runs):
            shapes = "".join(ocrb.read_cell(masked.crop((x0, line.top, x1, line.bottom)))
                             or mrz.FILLER for x0, x1 in line.cells[a:b])
            fits = fit_word(words[index], b - a)
            if not fits:
                # Misread run (a glyph doubled or dropped): read it alone as one word.
                box = (line.cells[a][0] - pad, line.top - pad, line.cells[b - 1][1] + pad,
                       line.bottom + pad)
                alone, more = _tesseract(masked.crop(box), "--psm", "8", "-c", whitelist)
                seconds += more
                fits = fit_word("".join(alone.split()), b - a)
            # Each place read by its OCR-B shape too (ocrb.py): a run tesseract cannot
            # fit to its length still has a reading, and the check digits choose.
            per_run.append([*fits, shapes] if shapes not in fits else fits)
            by_shape.append(shapes)
            same[a:b] = list(shapes) if fits[:1] == [shapes] else ["?"] * (b - a)
        agreed.append("".join(same))
        options: list[str] = []
        combinations = itertools.chain(
            [tuple(r[0] for r in per_run), tuple(by_shape)],
            itertools.islice(itertools.product(*per_run), _MAX_TRIES))
        for combination in combinations:
            chars = [mrz.FILLER] * len(line.cells)
            for found, (a, b) in zip(combination, runs, strict=True):
                chars[a:b] = list(found)
            if "".join(chars) not in options:
                options.append("".join(chars))
        choices.append(options)
    # Every assembly that verifies gives its readings, each with the fewest look-alike
    # swaps it took (tesseract's first at equal swaps): when tesseract misreads a place
    # (0 as N) and a swap elsewhere makes the check digit verify anyway, the OCR-B
    # shapes' reading is still offered; the printed zone picks (printed.candidates),
    # the swaps breaking a tie.
    error: MrzInvalid | None = None
    verified: dict[tuple[str, ...], tuple[int, mrz.Mrz]] = {}
    for assembled in itertools.islice(itertools.product(*choices), _MAX_TRIES):
        raws.append(tuple(assembled))
        try:
            swaps, readings = mrz.swapped(assembled)
        except MrzInvalid as exc:
            error = exc
            continue
        for reading in readings:
            if swaps < verified.get(reading.lines, (swaps + 1,))[0]:
                verified[reading.lines] = (swaps, reading)
    if verified:
        ranked = sorted(verified.values(), key=lambda found: found[0])
        return MrzReading(tuple(r for _, r in ranked), tuple(raw), seconds, tuple(agreed),
                          tuple(n for n, _ in ranked))
    assert error is not None
    raise error


_MAX_TRIES = 16
# Glyphs tesseract's stock model reads twice over one OCR-B character ("0" -> "O0").
_TWINS = ("O0DQ", "I1L", "S5", "B8", "Z2", "G6")


def fit_word(word: str | None, length: int) -> list[str]:
    """Readings of `word` with `length` characters: itself, or, when it has one
    character too many, each way of dropping one of an adjacent letter-digit pair of
    look-alikes. Layout repair and the check digits decide between them."""
    if word is None:
        return []
    if len(word) == length:
        return [word]
    if len(word) != length + 1:
        return []
    out: list[str] = []
    for i in range(len(word) - 1):
        pair = word[i:i + 2]
        # A letter and a digit of one shape: one glyph read both ways. Two letters
        # ("LL") may be real (WILLIAM), so those are never merged.
        if sum(c.isdigit() for c in pair) == 1 and any(
                pair[0] in group and pair[1] in group for group in _TWINS):
            for drop in (i, i + 1):
                candidate = word[:drop] + word[drop + 1:]
                if candidate not in out:
                    out.append(candidate)
    return out


def _words_for_runs(text: str, runs: list[tuple[int, int]]) -> list[str | None]:
    """Tesseract's words matched to the runs of non-filler places, by count or, when it
    joined words over a masked filler, by the runs' lengths; None where that fails."""
    words = text.split()
    if len(words) == len(runs):
        return list(words)
    joined = "".join(words)
    if len(joined) != sum(b - a for a, b in runs):
        return [None] * len(runs)
    out: list[str | None] = []
    position = 0
    for a, b in runs:
        out.append(joined[position:position + b - a])
        position += b - a
    return out


_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def read_text(data: bytes | Image.Image, *, thorough: bool = False
              ) -> tuple[list[str], float, list[str]]:
    """The words printed on a side (sparse-text mode, any characters), upper case, the
    side straightened first (rectify.straighten: a photograph's tilt and light).
    `thorough`: read four ways and every word kept: the binarised and the grey page
    (tesseract reads accented and blurred print better without a threshold, and worse
    elsewhere), each in sparse-text mode and in page-layout mode (which keeps a short
    word such as NG or DE beside its line, where sparse mode drops it as noise); then
    each word that looks like part of a document number read again alone
    (`_numbers_again`), answered apart: weaker evidence, read with a whitelist that
    makes an L a 1 now and then."""
    image = data if isinstance(data, Image.Image) else load_image(data)
    page = rectify.straighten(image)
    binary = binarise(page)
    table, seconds = _tesseract(binary, "--psm", "11", "tsv")
    found = list(_tsv_words(table))
    words = [w for w, _ in found]
    if thorough:
        for picture, mode in ((page, "11"), (binary, "3"), (page, "3")):
            text, more = _tesseract(picture, "--psm", mode)
            seconds += more
            words += _words(text)
        again, more = _numbers_again(page, [box for w, box in found
                                            if sum(c.isdigit() for c in w) >= 5])
        return words, seconds + more, again
    return words, seconds, []


def _words(text: str) -> list[str]:
    return [w.upper() for w in _WORD.findall(text.translate(_SYMBOLS))]


def _tsv_words(table: str) -> Iterator[tuple[str, tuple[int, int, int, int]]]:
    """Tesseract's TSV output: each word (as `_words` splits it) with its box."""
    for row in table.splitlines()[1:]:
        cells = row.split("\t")
        # A row without a word or with a box that is not four numbers carries nothing.
        if len(cells) < 12 or not cells[11].strip() or not all(
                c.isdigit() for c in cells[6:10]):
            continue
        left, top, width, height = (int(c) for c in cells[6:10])
        for word in _words(cells[11]):
            yield word, (left, top, left + width, top + height)


def _numbers_again(page: Image.Image, boxes: list[tuple[int, int, int, int]]
                   ) -> tuple[list[str], float]:
    """Each word of five digits or more read again alone, in single-line mode, with
    room on both sides: sparse-text mode drops or misreads a number's first letters
    next to the portrait's frame (UJ7801161 read 17801). The reading may then begin
    with some of the frame: its tails of six characters or more with a letter in them
    are kept too (never digits alone, which would pass for dates)."""
    words: list[str] = []
    seconds = 0.0
    for (left, top, right, bottom), beyond in itertools.product(boxes[:_MAX_NUMBERS], (1, 3)):
        # Room on the right for the rest of a number read as two words (17801 161),
        # and without it: single-line mode reads nothing well past the number's end.
        height = bottom - top
        crop = page.crop((max(0, left - 4 * height), max(0, top - height // 3),
                          min(page.width, right + beyond * height),
                          min(page.height, bottom + height // 3)))
        text, more = _tesseract(crop, "--psm", "7", "-c",
                                f"tessedit_char_whitelist={ALPHANUMERIC}")
        seconds += more
        for word in _words(text):
            words.append(word)
            words += [word[i:] for i in range(1, len(word) - 5)
                      if any(c.isalpha() for c in word[i:])]
    return words, seconds


ALPHANUMERIC = MRZ_WHITELIST.rstrip("<")
_MAX_NUMBERS = 4  # a side prints its number once; dates are not five digits long


# The stock model reads an O under an acute accent (Ó) as a copyright sign.
_SYMBOLS = str.maketrans({"©": "O"})
