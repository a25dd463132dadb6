"""Synthetic ID documents for tests and testers: images clearly marked SPECIMEN with
real MRZ layouts and check digits (ICAO 9303 TD1 cards, both sides; TD3 passport data
pages), and deliberate defects.

Sizes follow ISO/IEC 7810 (ID-1 85.60 x 53.98 mm; ID-3 125 x 88 mm) at 12 px/mm
(about 305 dpi); the MRZ is OCR-B at 10 characters per inch (ICAO 9303-3 §4.2), the
font from Debian's fonts-ocr-b (public domain: Matthew Skala, after Norbert Schwarz).
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import random
import string
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from portal.identity import countries, mrz, portraits
from portal.identity.mrz import DocumentFormat

OCR_B = Path("/usr/share/fonts/opentype/ocr-b/OCRB.otf")
# The printed (visual inspection zone) data need accents that OCR-B lacks (é, ç, å ...).
DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
PX_PER_MM = 12
MRZ_PITCH_MM = 2.54  # 10 characters per inch
MARK = "SPECIMEN"


class SpecimenError(ValueError):
    """The specimen cannot be made as asked."""


class Defect(enum.StrEnum):
    BAD_CHECK_DIGIT = "bad-check-digit"  # the birth date's check digit is off by one
    EXPIRED = "expired"  # the expiry date has passed
    MISMATCHED_SIDES = "mismatched-sides"  # TD1: the back belongs to another card


class Side(enum.StrEnum):
    FRONT = "front"  # TD1 front: photo, printed data
    BACK = "back"  # TD1 back: MRZ
    DATA_PAGE = "data-page"  # TD3: printed data and MRZ on one page


SIDES = {DocumentFormat.TD1: (Side.FRONT, Side.BACK), DocumentFormat.TD3: (Side.DATA_PAGE,)}


@dataclass(frozen=True)
class SpecimenData:
    format: DocumentFormat
    country: str  # MRZ code of the issuing state ('FRA', 'D', ...)
    surname: str  # as printed, accents and all
    given_names: str
    document_number: str
    birth_date: dt.date
    sex: str  # F, M or X
    expiry_date: dt.date
    nationality: str

    @property
    def document_code(self) -> str:
        return "ID" if self.format is DocumentFormat.TD1 else "P<"

    def mrz_lines(self) -> tuple[str, ...]:
        common = {"issuing_state": self.country, "document_number": self.document_number,
                  "birth_date": self.birth_date, "sex": self.sex,
                  "expiry_date": self.expiry_date, "nationality": self.nationality,
                  "surname": self.surname, "given_names": self.given_names,
                  "document_code": self.document_code}
        if self.format is DocumentFormat.TD1:
            return mrz.compose_td1(**common)  # type: ignore[arg-type]
        return mrz.compose_td3(**common)  # type: ignore[arg-type]


def document_number(rng: random.Random) -> str:
    """Nine characters: two letters then digits, as many states issue them."""
    letters = "".join(rng.choice("ABCDEFHJKLMNPRTUVWXY") for _ in range(2))
    return letters + "".join(rng.choice(string.digits) for _ in range(7))


def make_data(fmt: DocumentFormat, *, country: str, surname: str, given_names: str,
              sex: str = "F", birth_date: dt.date | None = None,
              expiry_date: dt.date | None = None, number: str | None = None,
              nationality: str | None = None, today: dt.date | None = None,
              rng: random.Random | None = None) -> SpecimenData:
    """Specimen data with defaults: a random number, born 1990, valid five more years."""
    rng = rng or random.Random()
    state = countries.lookup(country)
    if state is None:
        raise SpecimenError(f"unknown issuing state {country!r}")
    today = today or dt.date.today()
    data = SpecimenData(
        format=fmt, country=state.mrz_code, surname=surname, given_names=given_names,
        document_number=(number or document_number(rng)).upper(),
        birth_date=birth_date or dt.date(1990, 5, 17), sex=sex,
        expiry_date=expiry_date or today.replace(year=today.year + 5, day=1),
        nationality=(countries.lookup(nationality).mrz_code  # type: ignore[union-attr]
                     if nationality and countries.lookup(nationality) else state.mrz_code))
    try:
        data.mrz_lines()
    except (mrz.MrzInvalid, ValueError) as exc:
        raise SpecimenError(f"these data do not fit an MRZ: {exc}") from exc
    return data


@dataclass(frozen=True)
class Specimen:
    data: SpecimenData
    mrz_lines: tuple[str, ...]  # as printed (with the defect, if any)
    images: dict[Side, bytes]  # PNG per side
    defect: Defect | None = None


def _font(size: int) -> ImageFont.FreeTypeFont:
    if not OCR_B.exists():
        raise SpecimenError(f"the OCR-B font is missing ({OCR_B}): install fonts-ocr-b")
    return ImageFont.truetype(str(OCR_B), size)


def _viz_font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans for printed data; OCR-B (then without accents) when it is missing."""
    if DEJAVU_SANS.exists():
        return ImageFont.truetype(str(DEJAVU_SANS), size)
    return _font(size)


def _viz_text(text: str) -> str:
    if DEJAVU_SANS.exists():
        return text
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if not unicodedata.combining(c))


def _mrz_font() -> ImageFont.FreeTypeFont:
    """OCR-B sized so that one advance is 2.54 mm."""
    pitch = MRZ_PITCH_MM * PX_PER_MM
    size = 40
    while _font(size).getlength("<") < pitch:
        size += 1
    return _font(size)


def _date(value: dt.date) -> str:
    return value.strftime("%d %m %Y")


def _watermark(image: Image.Image) -> None:
    """A pale diagonal SPECIMEN across the whole side (pale enough to binarise away)."""
    layer = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(layer)
    font = _font(image.height // 5)
    draw.text((image.width // 2, image.height // 2), MARK, font=font, fill=255, anchor="mm")
    layer = layer.rotate(20, resample=Image.Resampling.BICUBIC)
    tint = Image.new("RGB", image.size, (235, 200, 200))
    image.paste(tint, (0, 0), layer)


def _banner(draw: ImageDraw.ImageDraw, width: int, y: int) -> None:
    font = _font(40)
    draw.rectangle((0, y, width, y + 56), fill=(190, 20, 20))
    draw.text((width // 2, y + 28), f"{MARK} - {MARK}", font=font, fill="white", anchor="mm")


def _stamp(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    """SPECIMEN in dark red on the light ground: readable after binarisation."""
    draw.text((x, y), MARK, font=_viz_font(36), fill=(170, 20, 20))


def _field(draw: ImageDraw.ImageDraw, x: int, y: int, label: str, value: str) -> None:
    draw.text((x, y), _viz_text(label), font=_viz_font(18), fill=(70, 70, 110))
    draw.text((x, y + 22), _viz_text(value), font=_viz_font(32), fill="black")


def _photo(image: Image.Image, box: tuple[int, int, int, int],
           portrait: Image.Image | None = None) -> None:
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(image)
    if portrait is not None:  # the holder's face (portraits.py); else a silhouette
        image.paste(portraits.fitted(portrait, (x1 - x0, y1 - y0)), (x0, y0))
        draw.rectangle(box, outline=(120, 120, 140), width=3)
        return
    draw.rectangle(box, fill=(214, 218, 226), outline=(120, 120, 140), width=3)
    cx, w = (x0 + x1) // 2, x1 - x0
    draw.ellipse((cx - w // 5, y0 + w // 6, cx + w // 5, y0 + w // 6 + w * 2 // 5),
                 fill=(160, 166, 180))
    draw.pieslice((x0 + w // 8, y1 - w // 2, x1 - w // 8, y1 + w // 3), 180, 360,
                  fill=(160, 166, 180))


def _printed_data(draw: ImageDraw.ImageDraw, data: SpecimenData, x: int, y: int) -> None:
    state = countries.lookup(data.nationality)
    _field(draw, x, y, "Surname / Nom", data.surname.upper())
    # Names in capitals, as ICAO's own specimens print them (9303-4 Appendix A: ANNA
    # MARIA ERIKSSON) and most European documents do.
    _field(draw, x, y + 70, "Given names / Prénoms", data.given_names.upper())
    _field(draw, x, y + 140, "Sex / Sexe", data.sex)
    _field(draw, x + 200, y + 140, "Nationality", state.mrz_code if state else data.nationality)
    _field(draw, x, y + 210, "Date of birth", _date(data.birth_date))
    _field(draw, x, y + 280, "Document No", data.document_number)
    _field(draw, x + 320, y + 280, "Expiry", _date(data.expiry_date))


def _mrz(draw: ImageDraw.ImageDraw, lines: tuple[str, ...], width: int, bottom: int) -> None:
    font = _mrz_font()
    pitch = MRZ_PITCH_MM * PX_PER_MM
    line_height = round(4.3 * PX_PER_MM)  # 9303-3: 3.8-4.6 mm between baselines... roughly
    left = round((width - pitch * len(lines[0])) / 2)
    top = bottom - line_height * len(lines)
    for row, line in enumerate(lines):
        for col, char in enumerate(line):
            draw.text((left + col * pitch, top + row * line_height), char, font=font,
                      fill="black")


def _new(size_mm: tuple[float, float]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (round(size_mm[0] * PX_PER_MM), round(size_mm[1] * PX_PER_MM)),
                      (246, 244, 236))
    _watermark(image)
    return image, ImageDraw.Draw(image)


def _title(draw: ImageDraw.ImageDraw, data: SpecimenData, text: str) -> None:
    state = countries.lookup(data.country)
    name = state.name if state else data.country
    draw.text((30, 72), f"{name.upper()} - {text}", font=_viz_font(28), fill=(30, 40, 110))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _td1_front(data: SpecimenData, portrait: Image.Image | None) -> bytes:
    image, draw = _new((85.6, 53.98))
    _banner(draw, image.width, 0)
    _title(draw, data, "IDENTITY CARD")
    _photo(image, (30, 130, 290, 470), portrait)
    _stamp(draw, 40, 500)
    _printed_data(draw, data, 320, 130)
    return _png(image)


def _td1_back(data: SpecimenData, lines: tuple[str, ...]) -> bytes:
    image, draw = _new((85.6, 53.98))
    _banner(draw, image.width, 0)
    issued = data.expiry_date.replace(year=data.expiry_date.year - 10)
    draw.text((30, 80), f"Issued {_date(issued)}", font=_viz_font(24), fill="black")
    draw.text((30, 115), "Authority: SPECIMEN PREFECTURE", font=_viz_font(24), fill="black")
    _stamp(draw, 30, 170)
    # The MRZ sits on a plain band, as on real cards (9303-3 §4.2: clear zone).
    band_top = image.height - round(17 * PX_PER_MM)
    draw.rectangle((0, band_top, image.width, image.height), fill="white")
    _mrz(draw, lines, image.width, image.height - round(1.5 * PX_PER_MM))
    return _png(image)


def _td3_page(data: SpecimenData, lines: tuple[str, ...],
              portrait: Image.Image | None = None) -> bytes:
    image, draw = _new((125, 88))
    _banner(draw, image.width, 0)
    _title(draw, data, "PASSPORT / PASSEPORT")
    _photo(image, (40, 130, 360, 560), portrait)
    _stamp(draw, 60, 600)
    _field(draw, 400, 120, "Type", "P")
    _field(draw, 560, 120, "Code", data.country)
    _printed_data(draw, data, 400, 190)
    band_top = image.height - round(15 * PX_PER_MM)
    draw.rectangle((0, band_top, image.width, image.height), fill="white")
    _mrz(draw, lines, image.width, image.height - round(2 * PX_PER_MM))
    return _png(image)


def _break_check_digit(lines: tuple[str, ...], fmt: DocumentFormat) -> tuple[str, ...]:
    row, col = (1, 6) if fmt is DocumentFormat.TD1 else (1, 19)
    line = lines[row]
    wrong = str((int(line[col]) + 1) % 10)
    changed = list(lines)
    changed[row] = line[:col] + wrong + line[col + 1:]
    return tuple(changed)


def render(data: SpecimenData, *, defect: Defect | None = None,
           today: dt.date | None = None, rng: random.Random | None = None,
           portrait: Image.Image | None = None) -> Specimen:
    """Draw every side of the document, with at most one deliberate defect, and the
    holder's `portrait` in the photo box (a silhouette without one)."""
    today = today or dt.date.today()
    if defect is Defect.EXPIRED:
        data = replace(data, expiry_date=today - dt.timedelta(days=30))
    lines = data.mrz_lines()
    if defect is Defect.BAD_CHECK_DIGIT:
        lines = _break_check_digit(lines, data.format)
    if data.format is DocumentFormat.TD3:
        if defect is Defect.MISMATCHED_SIDES:
            raise SpecimenError("a passport data page has one side: no mismatched sides")
        return Specimen(data, lines, {Side.DATA_PAGE: _td3_page(data, lines, portrait)}, defect)
    back_data, back_lines = data, lines
    if defect is Defect.MISMATCHED_SIDES:
        rng = rng or random.Random()
        other = document_number(rng)
        while other == data.document_number:
            other = document_number(rng)
        back_data = replace(data, document_number=other,
                            birth_date=data.birth_date + dt.timedelta(days=400))
        back_lines = back_data.mrz_lines()
    images = {Side.FRONT: _td1_front(data, portrait), Side.BACK: _td1_back(back_data, back_lines)}
    return Specimen(data, back_lines, images, defect)
