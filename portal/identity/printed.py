"""The printed (visual inspection) zone confirms the MRZ (issue 17), only as far as the
check digits cannot. A check digit (ICAO 9303-3 §4.9, weights 7-3-1 prime to 10) catches
any one character changed for one of another value modulo 10, so: the printed number may
differ from the MRZ's in one place where the MRZ holds no equal-value look-alike (mrz.TWINS:
G/6, L/1, K/<) and the printed character is an OCR look-alike of it (O for 0), or one
glyph read twice or two equal ones read as one; a printed date in one digit; two misreads
can cancel in a check digit, so never more. Twins are
compared exactly. No check digit covers names: each word must be printed (transliterated
per 9303-3 §6), one OCR edit away only where tesseract and the OCR-B shapes read the MRZ
name alike. What the printed zone does not confirm is never accepted.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Set
from dataclasses import dataclass
from typing import NoReturn

from portal.identity import names, ocr
from portal.identity.model import DocumentKind, IdentityError, SideResult, VerifiedIdentity
from portal.identity.mrz import LAYOUT, LOOKALIKES, TWINS, Mrz


def cross_check(kind: DocumentKind, mrz_side: SideResult, printed: SideResult
                ) -> VerifiedIdentity:
    """The identity the MRZ side states and the printed side confirms: of the MRZ's
    readings whose number the printed zone shows, the one whose names and dates it
    shows too; two such identities are no answer."""
    assert mrz_side.mrz is not None
    if mrz_side.specimen != printed.specimen:
        raise IdentityError("SIDES_MISMATCH", "only one side is marked SPECIMEN",
                            field="specimen")
    shown: dict[VerifiedIdentity, None] = {}
    refusal: IdentityError | None = None
    zone = _PrintedZone.read(printed)
    for reading in candidates(mrz_side.readings or (mrz_side.mrz,), printed.words,
                              mrz_side.swaps, printed.numbers_again):
        try:
            shown.setdefault(_identity(kind, reading, mrz_side, zone), None)
        except IdentityError as exc:
            refusal = refusal or exc
    if len(shown) == 1:
        return next(iter(shown))
    if not shown:
        assert refusal is not None
        raise refusal
    first, second = list(shown)[:2]
    _unreadable(next(f for f in ("surname", "given_names", "birth_date", "expiry_date",
                                 "sex", "nationality", "issuing_state")
                     if getattr(first, f) != getattr(second, f)))


@dataclass(frozen=True)
class _PrintedZone:
    """What the printed side's words offer every MRZ reading, worked out once."""

    names: frozenset[str]  # each word and each pair of words, folded as names
    lone: frozenset[str]  # one-glyph words (an accented capital read alone)
    windows: frozenset[str]  # every eight digits in a row: the printed dates

    @classmethod
    def read(cls, printed: SideResult) -> _PrintedZone:
        names: set[str] = set()
        for index, word in enumerate(printed.words):
            names |= _name_forms(word)
            # D'ANGELO prints as two words and is DANGELO in the MRZ.
            names |= _name_forms("".join(printed.words[index:index + 2]))
        # Dates print as digit groups; an O or an I read in one is a printed-zone slip.
        groups = [w.translate(_AS_DIGITS) for w in printed.words if len(w) <= 8]
        digits = "".join(w for w in groups if w.isdigit())
        return cls(frozenset(names), frozenset(w for w in printed.words if len(w) == 1),
                   frozenset(digits[i:i + 8] for i in range(len(digits) - 7)))


def _identity(kind: DocumentKind, reading: Mrz, mrz_side: SideResult,
              zone: _PrintedZone) -> VerifiedIdentity:
    """The identity one MRZ reading states, if the printed zone shows its names and
    dates (IdentityError otherwise)."""
    name = next(f for f in LAYOUT[reading.format] if f.name == "name")
    name_field = reading.lines[name.line][name.start:name.end]
    # Two readers agreeing on the MRZ name is what allows OCR noise on the printed one.
    agreed = (len(mrz_side.agreed) > name.line
              and mrz_side.agreed[name.line][name.start:name.end] == name_field)
    named = ([(w, "surname") for w in reading.primary_identifier]
             + [(w, "given_names") for w in reading.secondary_identifier])
    for index, (word, field_name) in enumerate(named):
        # A full name field may end in a word cut short (9303-3 §4.6.5).
        cut = index == len(named) - 1 and not name_field.endswith("<")
        _shown(_collapse(word), zone.names, field_name, prefix=cut, noisy=agreed,
               lone=zone.lone)
    for field_name, date in (("birth_date", reading.birth_date),
                             ("expiry_date", reading.expiry_date)):
        _date_shown(date.strftime("%d%m%Y"), zone.windows, field_name)
    return VerifiedIdentity(kind, reading.issuing_state, reading.document_number,
                            reading.primary_identifier, reading.secondary_identifier,
                            reading.birth_date, reading.sex, reading.nationality,
                            reading.expiry_date, mrz_side.specimen)


_CONFUSABLE = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "Z": "2",
                             "S": "5", "B": "8", "G": "6"})


# What the stock model reads for a printed glyph of a document number: the MRZ's
# look-alikes, and in the printed zone's proportional fonts T as 1 or 7, U as V. None
# is a twin of equal check value (mrz.TWINS), so the MRZ's check digit covers the place.
_PRINTED_LOOKALIKES = {**LOOKALIKES, "T": "17", "U": "V", "V": "U"}
_AS_DIGITS = str.maketrans({"O": "0", "D": "0", "I": "1", "L": "1"})
# The stock model reads an Ø as 0 or a blurred S as 5 in a printed name.
_AS_LETTERS = str.maketrans({"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G"})


def _shown(value: str, printed: Set[str], field_name: str, *, prefix: bool,
           noisy: bool, lone: Set[str]) -> None:
    """An MRZ name word the printed zone must show as it is (folded as names.py folds),
    or, when `noisy` (both MRZ readers read the name alike), one OCR edit away, or for
    a one-letter word a lone glyph the stock model makes of that letter accented (6 for
    Ó): no check digit covers names. Not found asks for a better picture: printed names
    in national letters (Ø, Å ...) are beyond the stock OCR model, so their absence
    says little."""
    if any(p == value or (prefix and p.startswith(value)) for p in printed):
        return
    n = len(value)
    if noisy and any(_near(value, q, shortest=3) for p in printed
                     for q in ((p[:n], p[:n + 1]) if prefix else (p,))):
        return
    if noisy and lone & set(_ACCENTED.get(value, "")):
        return
    _unreadable(field_name)


# A capital under an accent, as the stock model reads it alone (Ó as 6, Ø as 0).
_ACCENTED = {"O": "60"}


def _date_shown(value: str, windows: Set[str], field_name: str) -> None:
    """A check-digit-verified MRZ date (ddmmyyyy) printed as it is, or with one digit
    misread: one wrong digit always fails the MRZ's date check digit (9303-3 §4.9), two
    may cancel, so the printed zone must confirm all but one digit."""
    if any(sum(a != b for a, b in zip(value, w, strict=True)) <= 1 for w in windows):
        return
    _unreadable(field_name)


def _unreadable(field_name: str) -> NoReturn:
    what = field_name.replace("_", " ")
    raise IdentityError("PRINTED_UNREADABLE", f"the printed {what} could not be read well "
                        "enough to confirm the machine readable lines: take a sharper "
                        "photo, flat and well lit", field=field_name)


def _number_shown(number: str, printed: str) -> int | None:
    """How many places the printed word differs from the MRZ's number in: 0, 1 where the
    check digit covers that place (the MRZ's character has no equal-value look-alike and
    the printed one is an OCR look-alike of it, of another value, or read beside it as
    well), else None."""
    if len(printed) == len(number) - 1 and any(
            number[:i] + number[i + 1:] == printed for i in range(1, len(number))
            if number[i] == number[i - 1]):
        return 1  # one of two equal glyphs run together (JJ read J): that place's slip
    if len(printed) == len(number) + 1:
        # One glyph read twice (WWW for WW, S5 for 5, ocr.fit_word): that place's one
        # slip; a look-alike pair never beside a twin (G6 shows both).
        drops = [i for i in range(len(printed)) if printed[:i] + printed[i + 1:] == number]
        if any(printed[i] in printed[max(0, i - 1):i] + printed[i + 1:i + 2] for i in drops):
            return 1
        if number not in ocr.fit_word(printed, len(number)):
            return None
        return 1 if all(not set(printed[max(0, i - 1):i + 2]) & TWINS.keys()
                        for i in drops) else None
    if len(number) != len(printed):
        return None
    slips = [(m, p) for m, p in zip(number, printed, strict=True) if m != p]
    if not slips:
        return 0
    if len(slips) == 1:
        m, p = slips[0]
        if m not in TWINS and p in _PRINTED_LOOKALIKES.get(m, ""):
            return 1
    return None


def candidates(readings: tuple[Mrz, ...], printed: tuple[str, ...],
               swaps: tuple[int, ...] = (), again: tuple[str, ...] = ()) -> list[Mrz]:
    """The MRZ readings of the one document number printed on the document (issue 17):
    exactly, or with one printed-zone slip the check digit covers (_number_shown); they
    may differ elsewhere (a name letter two readers disagree on). A check digit cannot
    tell G from 6 or L from 1 (equal values, ICAO 9303-3 §4.9), nor a reading that two
    misreads made verify, so the printed zone decides, and a reading it does not
    confirm is never accepted. Two numbers it shows alike are told apart only by the
    look-alikes each reading needed swapped (`swaps`, per reading: fewer wins, as
    within one reading, mrz.swapped); else no answer. The words read `again` are a
    second chance, asked only when the page's words give no answer. A printed number
    that only looks like one asks for a better picture; one that is nothing like it is
    a mismatch."""
    for words in (printed, (*printed, *again)) if again else (printed,):
        picked = _picked(readings, words, swaps)
        if picked:
            return picked
    joined = {*printed, *again, *(a + b for a, b in itertools.pairwise(printed))}
    if any(_resembles(r.document_number, w) for r in readings for w in joined):
        _unreadable("document_number")
    raise IdentityError("SIDES_MISMATCH", "the document number printed on the front is not "
                        "the one in the MRZ", field="document_number")


def _picked(readings: tuple[Mrz, ...], printed: tuple[str, ...], swaps: tuple[int, ...]
            ) -> list[Mrz]:
    """`candidates` on one set of words: the readings of the one number they show with
    the fewest slips, or none."""
    # A number printed in two groups (YC747 8573) is read as two words.
    joined = {*printed, *(a + b for a, b in itertools.pairwise(printed))}
    shown = {r.lines: {_number_shown(r.document_number, w) for w in joined} - {None}
             for r in readings}
    cost = dict(zip((r.lines for r in readings), swaps, strict=False)) if swaps else {}
    for slips in (0, 1):
        picked = [r for r in readings if slips in shown[r.lines]]
        if len({r.document_number for r in picked}) > 1 and cost:
            fewest = min(cost[r.lines] for r in picked)
            picked = [r for r in picked if cost[r.lines] == fewest]
        if len({r.document_number for r in picked}) == 1:
            return picked
        if picked:
            return []
    return []


def _resembles(number: str, printed: str) -> bool:
    """A printed word that is the MRZ's number misread (look-alikes folded, up to a
    third of its places wrong, dropped or doubled), not another document's number: that
    one differs almost everywhere."""
    a, b = number.translate(_CONFUSABLE), printed.translate(_CONFUSABLE)
    if abs(len(a) - len(b)) > len(a) // 3:
        return False
    return _distance(a, b) <= max(1, len(a) // 3)


def _near(expected: str, printed: str, *, shortest: int = 5) -> bool:
    """Equal, or for words of `shortest` characters or more one edit apart (Levenshtein):
    OCR of the printed zone drops or doubles a glyph now and then (Ø, O0). The MRZ,
    with its check digits, stays the source; this only ties the sides together."""
    if expected == printed:
        return True
    if len(expected) < shortest or abs(len(expected) - len(printed)) > 1:
        return False
    return _distance(expected, printed) <= 1


def _distance(a: str, b: str) -> int:
    """Levenshtein's edit distance."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _collapse(word: str) -> str:
    """Forget the ICAO digraphs (MUELLER ~ MULLER): OCR may lose the umlaut that the MRZ
    spelled out."""
    for digraph, letter in (("AE", "A"), ("OE", "O"), ("UE", "U"), ("AA", "A")):
        word = word.replace(digraph, letter)
    return word


def _name_forms(word: str) -> set[str]:
    """A printed word folded, digraphs collapsed; empty if not a name."""
    forms: set[str] = set()
    # A word without letters is a number or a date, never a name misread.
    for text in (word, word.translate(_AS_LETTERS)) if re.search("[^0-9]", word) else ():
        try:
            forms |= {_collapse("".join(names.words(text))),
                      _collapse("".join(names.words(text, icao=True)))}
        except names.NameInvalid:
            continue
    return forms
