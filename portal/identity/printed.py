"""The printed (visual inspection) zone confirms the MRZ (issue 17): the document
number character for character, the names and dates as they are printed. No check
digit covers the names, and none tells G from 6 or L from 1 (equal values, ICAO
9303-3 §4.9): the printed zone decides, and what it does not confirm is never
accepted. An OCR slip (one edit away) asks for a better picture; more is a mismatch.
"""

from __future__ import annotations

from portal.identity import names
from portal.identity.model import DocumentKind, IdentityError, SideResult, VerifiedIdentity
from portal.identity.mrz import Mrz


def cross_check(kind: DocumentKind, mrz_side: SideResult, printed: SideResult
                ) -> VerifiedIdentity:
    """The identity the MRZ side states and the printed side confirms."""
    assert mrz_side.mrz is not None
    if mrz_side.specimen != printed.specimen:
        raise IdentityError("SIDES_MISMATCH", "only one side is marked SPECIMEN",
                            field="specimen")
    reading = confirmed(mrz_side.readings or (mrz_side.mrz,), printed.words)
    printed_names: set[str] = set()
    for index, word in enumerate(printed.words):
        printed_names |= _name_forms(word)
        # D'ANGELO prints as two words and is DANGELO in the MRZ.
        printed_names |= _name_forms("".join(printed.words[index:index + 2]))
    name_field = reading.lines[2] if kind is DocumentKind.ID_CARD else reading.lines[0]
    named = ([(w, "surname") for w in reading.primary_identifier]
             + [(w, "given_names") for w in reading.secondary_identifier])
    for index, (word, field_name) in enumerate(named):
        # A full name field may end in a word cut short (9303-3 §4.6.5).
        cut = index == len(named) - 1 and not name_field.endswith("<")
        _shown(_collapse(word), printed_names, field_name, prefix=cut)
    # Dates print as digit groups; an O or an I read in one is a printed-zone slip
    # (the MRZ's dates are already check-digit verified).
    groups = [w.translate(_AS_DIGITS) for w in printed.words if len(w) <= 8]
    digits = "".join(w for w in groups if w.isdigit())
    windows = {digits[i:i + n] for n in (7, 8, 9) for i in range(len(digits) - n + 1)}
    for field_name, date in (("birth_date", reading.birth_date),
                             ("expiry_date", reading.expiry_date)):
        _shown(date.strftime("%d%m%Y"), windows, field_name, prefix=False)
    return VerifiedIdentity(kind, reading.issuing_state, reading.document_number,
                            reading.primary_identifier, reading.secondary_identifier,
                            reading.birth_date, reading.sex, reading.nationality,
                            reading.expiry_date, mrz_side.specimen)


_CONFUSABLE = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "Z": "2",
                             "S": "5", "B": "8", "G": "6"})


_AS_DIGITS = str.maketrans({"O": "0", "D": "0", "I": "1", "L": "1"})


def _shown(value: str, printed: set[str], field_name: str, *, prefix: bool) -> None:
    """An MRZ value the printed zone must show as it is (folded as names.py folds):
    no check digit covers names, and an OCR slip in either zone must never be taken
    for agreement. Not found asks for a better picture: printed names in national
    letters (Ø, Å ...) are beyond the stock OCR model, so their absence says little."""
    if any(p == value or (prefix and p.startswith(value)) for p in printed):
        return
    what = field_name.replace("_", " ")
    raise IdentityError("PRINTED_UNREADABLE", f"the printed {what} could not be read well "
                        "enough to confirm the machine readable lines: take a sharper "
                        "photo, flat and well lit", field=field_name)


def confirmed(readings: tuple[Mrz, ...], printed: tuple[str, ...]) -> Mrz:
    """The one MRZ reading whose document number is printed on the document, character
    for character (issue 17): a check digit cannot tell G from 6 or L from 1 (equal
    values, ICAO 9303-3 §4.9), nor a reading that two misreads made verify, so the
    printed zone decides, and a reading it does not confirm is never accepted. A
    printed number that only looks like one (an OCR slip on the printed zone) asks for
    a better picture; one that is nothing like it is a mismatch."""
    exact = [r for r in readings if r.document_number in printed]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1 or any(
            _near(r.document_number.translate(_CONFUSABLE), w.translate(_CONFUSABLE))
            for r in readings for w in printed):
        raise IdentityError("PRINTED_UNREADABLE", "the printed document number could not "
                            "be read well enough to confirm the machine readable lines: "
                            "take a sharper photo, flat and well lit",
                            field="document_number")
    raise IdentityError("SIDES_MISMATCH", "the document number printed on the front is not "
                        "the one in the MRZ", field="document_number")


def _near(expected: str, printed: str) -> bool:
    """Equal, or for words of five characters or more one edit apart (Levenshtein):
    OCR of the printed zone drops or doubles a glyph now and then (Ø, O0). The MRZ,
    with its check digits, stays the source; this only ties the sides together."""
    if expected == printed:
        return True
    if len(expected) < 5 or abs(len(expected) - len(printed)) > 1:
        return False
    previous = list(range(len(printed) + 1))
    for i, a in enumerate(expected, 1):
        current = [i]
        for j, b in enumerate(printed, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (a != b)))
        previous = current
    return previous[-1] <= 1


def _collapse(word: str) -> str:
    """Forget the ICAO digraphs (MUELLER ~ MULLER): OCR may lose the umlaut that the MRZ
    spelled out."""
    for digraph, letter in (("AE", "A"), ("OE", "O"), ("UE", "U"), ("AA", "A")):
        word = word.replace(digraph, letter)
    return word


def _name_forms(word: str) -> set[str]:
    """A printed word folded, digraphs collapsed; empty if not a name."""
    try:
        return {_collapse("".join(names.words(word))),
                _collapse("".join(names.words(word, icao=True)))}
    except names.NameInvalid:
        return set()
