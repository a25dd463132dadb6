"""Machine readable zones of ICAO Doc 9303: TD1 (ID cards, 3 x 30) and TD3 (passports,
2 x 44): compose, parse, verify every check digit, and repair OCR output by layout.

Layouts: Doc 9303 Part 5 §4.2.2 (TD1) and Part 4 §4.2.2 (TD3); check digits: Part 3
§4.9 (weights 7-3-1, '<' = 0, A = 10 ... Z = 35, modulo 10).
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from portal.identity import countries, names

FILLER = "<"
_ALPHABET = re.compile(r"^[A-Z0-9<]*$")


class DocumentFormat(enum.StrEnum):
    TD1 = "td1"  # ID card: 3 lines of 30
    TD3 = "td3"  # passport data page: 2 lines of 44

    @property
    def shape(self) -> tuple[int, int]:
        return (3, 30) if self is DocumentFormat.TD1 else (2, 44)


class MrzReason(enum.StrEnum):
    BAD_LENGTH = "bad-length"
    BAD_CHARACTER = "bad-character"
    BAD_CHECK_DIGIT = "bad-check-digit"
    BAD_DATE = "bad-date"
    BAD_FIELD = "bad-field"
    UNREADABLE = "unreadable"
    AMBIGUOUS = "ambiguous"  # several readings verify: the printed zone must decide


class MrzInvalid(ValueError):
    """The MRZ is refused; `reason` says why, `field` which field when one is at fault."""

    def __init__(self, reason: MrzReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


def _value(char: str) -> int:
    if char.isdigit():
        return int(char)
    if "A" <= char <= "Z":
        return ord(char) - ord("A") + 10
    if char == FILLER:
        return 0
    raise MrzInvalid(MrzReason.BAD_CHARACTER, f"{char!r} is not an MRZ character")


def check_digit(data: str) -> str:
    """ICAO 9303-3 §4.9: weights 7, 3, 1 repeating; the sum modulo 10."""
    weights = (7, 3, 1)
    return str(sum(_value(c) * weights[i % 3] for i, c in enumerate(data)) % 10)


@dataclass(frozen=True)
class Mrz:
    """What an MRZ says, every check digit verified."""

    format: DocumentFormat
    document_code: str  # two characters: 'P<', 'ID', 'I<', ...
    issuing_state: str  # ICAO 9303-3 §5 three-letter code ('D' padded for Germany: 'D<<')
    document_number: str
    birth_date: dt.date
    sex: str  # 'F', 'M' or 'X' (unspecified, '<' in the MRZ)
    expiry_date: dt.date
    nationality: str
    primary_identifier: tuple[str, ...]  # surname(s), one word each
    secondary_identifier: tuple[str, ...]  # given name(s), one word each
    optional_data: str  # TD3 personal number / TD1 optional data (line 1), fillers removed
    optional_data_2: str  # TD1 line 2 optional data; '' for TD3
    lines: tuple[str, ...]

    @property
    def document_type(self) -> str:
        """The first letter of the document code: 'P' passport, 'I'/'A'/'C' cards."""
        return self.document_code[0]

    @property
    def surname(self) -> str:
        return " ".join(self.primary_identifier)

    @property
    def given_names(self) -> str:
        return " ".join(self.secondary_identifier)


@dataclass(frozen=True)
class _Field:
    name: str
    line: int
    start: int
    end: int  # exclusive
    kind: str  # 'n' digits, 'a' letters or filler, 'x' letters, digits or filler, 'c' check


_TD1_FIELDS = (
    _Field("document_code", 0, 0, 2, "a"), _Field("issuing_state", 0, 2, 5, "a"),
    _Field("document_number", 0, 5, 14, "x"), _Field("document_number_check", 0, 14, 15, "c"),
    _Field("optional_data", 0, 15, 30, "x"),
    _Field("birth_date", 1, 0, 6, "n"), _Field("birth_date_check", 1, 6, 7, "c"),
    _Field("sex", 1, 7, 8, "a"), _Field("expiry_date", 1, 8, 14, "n"),
    _Field("expiry_date_check", 1, 14, 15, "c"), _Field("nationality", 1, 15, 18, "a"),
    _Field("optional_data_2", 1, 18, 29, "x"), _Field("composite_check", 1, 29, 30, "c"),
    _Field("name", 2, 0, 30, "a"),
)
_TD3_FIELDS = (
    _Field("document_code", 0, 0, 2, "a"), _Field("issuing_state", 0, 2, 5, "a"),
    _Field("name", 0, 5, 44, "a"),
    _Field("document_number", 1, 0, 9, "x"), _Field("document_number_check", 1, 9, 10, "c"),
    _Field("nationality", 1, 10, 13, "a"), _Field("birth_date", 1, 13, 19, "n"),
    _Field("birth_date_check", 1, 19, 20, "c"), _Field("sex", 1, 20, 21, "a"),
    _Field("expiry_date", 1, 21, 27, "n"), _Field("expiry_date_check", 1, 27, 28, "c"),
    _Field("optional_data", 1, 28, 42, "x"), _Field("optional_data_check", 1, 42, 43, "c"),
    _Field("composite_check", 1, 43, 44, "c"),
)
LAYOUT = {DocumentFormat.TD1: _TD1_FIELDS, DocumentFormat.TD3: _TD3_FIELDS}


def _pad(text: str, width: int, field: str) -> str:
    if len(text) > width:
        raise MrzInvalid(MrzReason.BAD_LENGTH, f"{field} longer than {width} characters",
                         field)
    if not _ALPHABET.fullmatch(text):
        raise MrzInvalid(MrzReason.BAD_CHARACTER, f"{field} has characters outside A-Z 0-9 <",
                         field)
    return text + FILLER * (width - len(text))


def _name_field(surname: str, given_names: str, width: int) -> str:
    """ICAO 9303-3 §4.6: primary identifier, '<<', secondary identifier; names that do not
    fit are truncated at the end (the simplest of §4.6.5's truncation methods)."""
    primary = names.to_mrz(surname)
    secondary = names.to_mrz(given_names) if given_names.strip() else ""
    if not primary:
        raise MrzInvalid(MrzReason.BAD_FIELD, "the primary identifier is empty", "name")
    text = primary + ("<<" + secondary if secondary else "")
    return _pad(text[:width].rstrip(FILLER) if len(text) > width else text, width, "name")


def _date(value: dt.date) -> str:
    return value.strftime("%y%m%d")


def _sex(value: str) -> str:
    if value not in ("F", "M", "X", "<"):
        raise MrzInvalid(MrzReason.BAD_FIELD, "sex is F, M or X", "sex")
    return FILLER if value == "X" else value


def _code(value: str, field: str) -> str:
    if not re.fullmatch(r"[A-Z]{1,3}", value):
        raise MrzInvalid(MrzReason.BAD_FIELD, f"{field}: one to three letters", field)
    return _pad(value, 3, field)


def compose_td1(*, document_code: str = "ID", issuing_state: str, document_number: str,
                birth_date: dt.date, sex: str, expiry_date: dt.date, nationality: str,
                surname: str, given_names: str, optional_data: str = "",
                optional_data_2: str = "") -> tuple[str, str, str]:
    """Three TD1 lines with their check digits (ICAO 9303-5 §4.2.2)."""
    code = _pad(document_code, 2, "document_code")
    number = document_number.upper()
    if len(number) > 9:
        # 9303-5 §4.2.4 note j: a long number continues in the optional data, its check
        # digit after it; the number's own check digit place holds '<'.
        head, tail = number[:9], number[9:]
        extended = tail + check_digit(_pad(number, len(number), "document_number"))
        line1 = (code + _code(issuing_state, "issuing_state") + head + FILLER
                 + _pad(extended + optional_data, 15, "optional_data"))
    else:
        field = _pad(number, 9, "document_number")
        line1 = (code + _code(issuing_state, "issuing_state") + field + check_digit(field)
                 + _pad(optional_data, 15, "optional_data"))
    birth, expiry = _date(birth_date), _date(expiry_date)
    body = (birth + check_digit(birth) + _sex(sex) + expiry + check_digit(expiry)
            + _code(nationality, "nationality") + _pad(optional_data_2, 11, "optional_data_2"))
    composite = check_digit(line1[5:30] + body[0:7] + body[8:15] + body[18:29])
    line2 = body + composite
    line3 = _name_field(surname, given_names, 30)
    return line1, line2, line3


def compose_td3(*, document_code: str = "P<", issuing_state: str, document_number: str,
                birth_date: dt.date, sex: str, expiry_date: dt.date, nationality: str,
                surname: str, given_names: str, personal_number: str = "") -> tuple[str, str]:
    """Two TD3 lines with their check digits (ICAO 9303-4 §4.2.2)."""
    line1 = (_pad(document_code, 2, "document_code") + _code(issuing_state, "issuing_state")
             + _name_field(surname, given_names, 39))
    number = _pad(document_number.upper(), 9, "document_number")
    birth, expiry = _date(birth_date), _date(expiry_date)
    personal = _pad(personal_number, 14, "optional_data")
    # 9303-4 note: an empty personal number may have '<' or 0 as its check digit; we write 0.
    body = (number + check_digit(number) + _code(nationality, "nationality") + birth
            + check_digit(birth) + _sex(sex) + expiry + check_digit(expiry) + personal
            + check_digit(personal))
    composite = check_digit(body[0:10] + body[13:20] + body[21:43])
    return line1, body + composite


def _parse_date(text: str, field: str, *, today: dt.date, future: bool) -> dt.date:
    """YYMMDD with the century chosen as ICAO readers do: a birth date is never in the
    future; an expiry date lies within 50 years either side of today."""
    if not re.fullmatch(r"\d{6}", text):
        raise MrzInvalid(MrzReason.BAD_DATE, f"{field} is not YYMMDD", field)
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:6])
    century = today.year // 100 * 100
    year = century + yy
    if not future and year > today.year:
        year -= 100
    if future and year > today.year + 50:
        year -= 100
    try:
        return dt.date(year, mm, dd)
    except ValueError:
        raise MrzInvalid(MrzReason.BAD_DATE, f"{field} {text} is not a date", field) from None


def _verify(data: str, digit: str, field: str, *, empty_may_be_filler: bool = False) -> None:
    if empty_may_be_filler and digit == FILLER and set(data) == {FILLER}:
        return
    if not digit.isdigit() or check_digit(data) != digit:
        raise MrzInvalid(MrzReason.BAD_CHECK_DIGIT, f"the check digit of {field} is wrong",
                         field)


def _split_name(field: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = field.rstrip(FILLER)
    if not text or not re.fullmatch(r"[A-Z<]+", text):
        raise MrzInvalid(MrzReason.BAD_FIELD, "the name field holds no name", "name")
    primary, _, secondary = text.partition("<<")
    parts = tuple(p for p in primary.split(FILLER) if p)
    given = tuple(p for p in secondary.split(FILLER) if p)
    if not parts:
        raise MrzInvalid(MrzReason.BAD_FIELD, "the primary identifier is empty", "name")
    return parts, given


def _shape(lines: Sequence[str]) -> DocumentFormat:
    for fmt in DocumentFormat:
        count, width = fmt.shape
        if len(lines) == count and all(len(line) == width for line in lines):
            return fmt
    raise MrzInvalid(MrzReason.BAD_LENGTH,
                     "an MRZ is 3 lines of 30 (TD1) or 2 lines of 44 (TD3); got "
                     + " + ".join(str(len(line)) for line in lines))


def parse(lines: Sequence[str], *, today: dt.date | None = None) -> Mrz:
    """Parse and verify an MRZ: every field's check digit and the composite one.

    Expiry is not judged here (that is policy: see service.py); dates must be real dates.
    """
    if not isinstance(lines, Sequence) or isinstance(lines, str) or not all(
            isinstance(line, str) for line in lines):
        raise MrzInvalid(MrzReason.BAD_FIELD, "an MRZ is a list of lines")
    lines = tuple(lines)
    fmt = _shape(lines)
    for line in lines:
        if not _ALPHABET.fullmatch(line):
            raise MrzInvalid(MrzReason.BAD_CHARACTER, "MRZ characters are A-Z, 0-9 and '<'")
    today = today or dt.date.today()
    f = {fld.name: lines[fld.line][fld.start:fld.end] for fld in LAYOUT[fmt]}
    if fmt is DocumentFormat.TD3 and f["document_code"][0] != "P":
        raise MrzInvalid(MrzReason.BAD_FIELD, "a TD3 document code starts with P",
                         "document_code")
    if fmt is DocumentFormat.TD1 and f["document_code"][0] not in "IAC":
        raise MrzInvalid(MrzReason.BAD_FIELD, "a TD1 document code starts with I, A or C",
                         "document_code")
    number = f["document_number"]
    optional = f["optional_data"]
    if fmt is DocumentFormat.TD1 and f["document_number_check"] == FILLER:
        # Long document number (9303-5 note j): the rest and its check digit follow in
        # the optional data, up to the first filler.
        extended, _, rest = optional.partition(FILLER)
        if len(extended) < 2:
            raise MrzInvalid(MrzReason.BAD_CHECK_DIGIT, "the document number has no check "
                             "digit", "document_number")
        _verify(number + extended[:-1], extended[-1], "document_number")
        number, optional = number + extended[:-1], rest
    else:
        _verify(number, f["document_number_check"], "document_number")
    _verify(f["birth_date"], f["birth_date_check"], "birth_date")
    _verify(f["expiry_date"], f["expiry_date_check"], "expiry_date")
    if fmt is DocumentFormat.TD3:
        _verify(f["optional_data"], f["optional_data_check"], "optional_data",
                empty_may_be_filler=True)
        line = lines[1]
        _verify(line[0:10] + line[13:20] + line[21:43], f["composite_check"], "composite")
    else:
        _verify(lines[0][5:30] + lines[1][0:7] + lines[1][8:15] + lines[1][18:29],
                f["composite_check"], "composite")
    for field in ("issuing_state", "nationality"):
        if not re.fullmatch(r"[A-Z]{1,3}<{0,2}", f[field]):
            raise MrzInvalid(MrzReason.BAD_FIELD, f"{field} is not a state code", field)
    if f["sex"] not in ("F", "M", FILLER):
        raise MrzInvalid(MrzReason.BAD_FIELD, "sex is F, M or '<'", "sex")
    primary, secondary = _split_name(f["name"])
    return Mrz(
        format=fmt, document_code=f["document_code"],
        issuing_state=f["issuing_state"].rstrip(FILLER),
        document_number=number.replace(FILLER, ""),
        birth_date=_parse_date(f["birth_date"], "birth_date", today=today, future=False),
        sex="X" if f["sex"] == FILLER else f["sex"],
        expiry_date=_parse_date(f["expiry_date"], "expiry_date", today=today, future=True),
        nationality=f["nationality"].rstrip(FILLER), primary_identifier=primary,
        secondary_identifier=secondary, optional_data=optional.replace(FILLER, " ").strip(),
        optional_data_2=(f.get("optional_data_2") or "").replace(FILLER, " ").strip(),
        lines=lines)


# OCR repair ------------------------------------------------------------------------

# Shapes an OCR engine confuses, by what the layout says a place must hold.
_TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "U": "0", "I": "1", "L": "1", "T": "1",
             "Z": "2", "S": "5", "B": "8", "G": "6", "A": "4"}
_TO_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "8": "B", "6": "G", "4": "A"}


def _repair_filler_runs(text: str) -> str:
    """Tesseract's stock model reads runs of '<' as 'K' or mixes of 'K' and '<'
    (DESIGN "Tests with real parts"): a 'K' touching a '<' on both sides, a 'K' run at
    the end of a field once a '<' was seen before it, and a field tail of only K and '<'
    containing at least two '<' are fillers."""
    chars = list(text)
    # Tail: the longest suffix of K and '<' with at least two fillers in it.
    i = len(chars)
    while i > 0 and chars[i - 1] in "K<":
        i -= 1
    tail = chars[i:]
    if tail.count(FILLER) >= 2 or (tail and i > 0 and chars[i - 1] == FILLER):
        # Keep a K that ends a word (glued to a letter or first in the field) when a
        # filler follows it (NOVAK<<JAN): a real final K is followed by the filler run.
        keep = 1 if tail[0] == "K" and (i == 0 or chars[i - 1] != FILLER) and (
            len(tail) > 1 and tail[1] == FILLER) else 0
        chars[i + keep:] = FILLER * (len(tail) - keep)
    for j in range(1, len(chars) - 1):
        if chars[j] == "K" and chars[j - 1] == FILLER and chars[j + 1] == FILLER:
            chars[j] = FILLER
    return "".join(chars)


def repair(lines: Sequence[str], fmt: DocumentFormat) -> tuple[str, ...]:
    """Fix OCR confusions by the field layout: digits where digits must be, letters
    where letters must be, fillers in filler runs. Lengths must already be right; the
    result is only trusted once `parse` has verified every check digit."""
    count, width = fmt.shape
    if len(lines) != count or any(len(line) != width for line in lines):
        raise MrzInvalid(MrzReason.BAD_LENGTH, f"{fmt.value}: {count} lines of {width}")
    out = [list(line.upper()) for line in lines]
    for fld in LAYOUT[fmt]:
        row = out[fld.line]
        segment = "".join(row[fld.start:fld.end])
        if fld.kind in ("n", "c"):
            segment = "".join(_TO_DIGIT.get(c, c) if c != FILLER else c for c in segment)
            if fld.kind == "c" and segment == "K":
                segment = FILLER
        elif fld.kind == "a":
            segment = "".join(_TO_LETTER.get(c, c) for c in segment)
            if fld.name == "sex" and segment == "K":
                segment = FILLER
            if fld.name in ("name", "issuing_state", "nationality"):
                segment = _repair_filler_runs(segment)
        else:
            segment = _repair_filler_runs(segment)
        row[fld.start:fld.end] = list(segment)
    return tuple("".join(row) for row in out)


def read(lines: Sequence[str], *, today: dt.date | None = None) -> Mrz:
    """OCR lines -> the one verified MRZ they can be: `readings`, refused as
    `ambiguous` when the check digits leave more than one (the printed zone decides
    those: service.py)."""
    found = readings(lines, today=today)
    if len(found) > 1:
        raise MrzInvalid(MrzReason.AMBIGUOUS, "the check digits cannot tell "
                         + " from ".join(r.document_number for r in found),
                         "document_number")
    return found[0]


# Look-alikes an OCR engine swaps at a place the layout cannot pin (letters, digits and
# filler all allowed: the document number and optional data).
_LOOKALIKES = {"0": "OQD", "O": "0QD", "Q": "0O", "D": "0O", "1": "IL", "I": "1L",
               "L": "1I", "2": "Z", "Z": "2", "5": "S", "S": "5", "8": "B", "B": "8",
               "6": "G", "G": "6", "K": "<", "<": "K"}
# Look-alikes of equal value modulo 10 (L = 21 and 1, G = 16 and 6, K = 20 and '<' = 0):
# every weight of 9303-3 §4.9 (7, 3, 1) is prime to 10, so no check digit, composite
# included, tells them apart; one character's check digit is its value times 7.
TWINS = {char: twins for char, alts in _LOOKALIKES.items()
         if (twins := "".join(a for a in alts if check_digit(a) == check_digit(char)))}
_TWINS = TWINS
LOOKALIKES = _LOOKALIKES
MAX_SWAPS = 2  # look-alikes swapped at most in one reading
_MAX_CANDIDATES = 20_000


# Letters an OCR engine swaps in a three-letter code (D read as O turned DNK into ONK).
_CODE_LOOKALIKES = {"O": "DQC", "D": "O", "Q": "O", "C": "GO", "G": "C", "I": "L", "L": "I",
                    "E": "F", "F": "E", "P": "R", "R": "P", "U": "V", "V": "U", "M": "N",
                    "N": "MH", "H": "N"}


def _state_codes(lines: tuple[str, ...], fmt: DocumentFormat) -> tuple[str, ...]:
    """No check digit covers the issuing state or the nationality (9303-3 §4.9): a code
    no state has (countries.py) that one look-alike letter turns into exactly one
    known code is that code; any other unknown code is left for the policy to refuse."""
    rows = [list(line) for line in lines]
    for fld in LAYOUT[fmt]:
        if fld.name not in ("issuing_state", "nationality"):
            continue
        code = "".join(rows[fld.line][fld.start:fld.end]).rstrip(FILLER)
        if not code or countries.lookup(code) is not None:
            continue
        known = {state.mrz_code for i, char in enumerate(code)
                 for alt in _CODE_LOOKALIKES.get(char, "")
                 if (state := countries.lookup(code[:i] + alt + code[i + 1:])) is not None
                 and state.mrz_code == code[:i] + alt + code[i + 1:]}
        if len(known) == 1:
            rows[fld.line][fld.start:fld.end] = list(known.pop().ljust(fld.end - fld.start,
                                                                       FILLER))
    return tuple("".join(row) for row in rows)


def _number_places(fmt: DocumentFormat, lines: tuple[str, ...]) -> list[tuple[int, int]]:
    """(line, column) of the document number's characters, with a TD1 long number's
    continuation in the optional data (9303-5 note j) up to the first filler."""
    fld = next(f for f in LAYOUT[fmt] if f.name == "document_number")
    places = [(fld.line, c) for c in range(fld.start, fld.end)]
    if fmt is DocumentFormat.TD1 and lines[0][14] == FILLER:
        for column in range(15, 30):
            if lines[0][column] == FILLER:
                break
            places.append((0, column))
    return places


def _swaps(lines: tuple[str, ...], places: list[tuple[int, int]],
           table: dict[str, str], count: int) -> list[tuple[str, ...]]:
    """Every way of replacing `count` characters at `places` by their look-alikes."""
    out: list[tuple[str, ...]] = []
    options = [(p, alt) for p in places for alt in table.get(lines[p[0]][p[1]], "")]
    for chosen in itertools.combinations(options, count):
        if len({p for p, _ in chosen}) < count:
            continue
        rows = [list(line) for line in lines]
        for (row, column), alt in chosen:
            rows[row][column] = alt
        number = "".join(rows[r][c] for r, c in places)
        if FILLER in number.rstrip(FILLER):
            continue  # fillers only pad a number at its end (9303-3 §4.2.2)
        out.append(tuple("".join(r) for r in rows))
        if len(out) > _MAX_CANDIDATES:
            break
    return out


def readings(lines: Sequence[str], *, today: dt.date | None = None) -> tuple[Mrz, ...]:
    """Every reading of OCR lines that verifies all the check digits (`swapped`)."""
    return swapped(lines, today=today)[1]


def swapped(lines: Sequence[str], *, today: dt.date | None = None
            ) -> tuple[int, tuple[Mrz, ...]]:
    """How many look-alikes had to be swapped, and every reading of OCR lines that
    verifies all the check digits (ICAO 9303-3 §4.9, the composite included), the
    OCR's own first.

    The layout settles digits-only and letters-only places (`repair`). At places that
    hold letters, digits or filler (the document number), look-alikes (O/0, I/1/L, B/8,
    S/5, Z/2, G/6, K/'<' ...) are swapped, one then two at a time, and the fewest swaps
    that verify win. Pairs of equal check value (G/6, L/1, K/'<') can never be told
    apart by a check digit: each such place's twin is added as another reading, and
    the printed zone must decide between them.
    """
    cleaned = [re.sub(r"\s+", "", line.upper()) for line in lines if line.strip()]
    fmt = _shape(cleaned)
    fixed = _state_codes(repair(cleaned, fmt), fmt)
    places = _number_places(fmt, fixed)
    first: MrzInvalid | None = None
    found: dict[tuple[str, ...], Mrz] = {}
    for count in range(MAX_SWAPS + 1):
        for candidate in _swaps(fixed, places, _LOOKALIKES, count) if count else [fixed]:
            try:
                found.setdefault(candidate, parse(candidate, today=today))
            except MrzInvalid as exc:
                first = first or exc
                if exc.reason is not MrzReason.BAD_CHECK_DIGIT:
                    raise  # a date or a field the swaps do not touch: no swap helps
        if found:
            break
    if not found:
        assert first is not None
        raise first
    for verified in list(found.values()):
        lines_ = verified.lines
        twin_places = _number_places(fmt, lines_)
        for n in range(1, len(twin_places) + 1):
            for twin in _swaps(lines_, twin_places, _TWINS, n):
                if twin not in found:
                    try:
                        found[twin] = parse(twin, today=today)
                    except MrzInvalid:
                        continue  # a filler inside the number is not a number
    return count, tuple(found.values())
