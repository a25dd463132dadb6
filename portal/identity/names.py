"""Names as people write them and as ID documents print them.

Two jobs: transliterate a name into the MRZ alphabet (ICAO Doc 9303 Part 3 §6,
"Transliterations recommended for use by States"), and compare a requester's
spelling with a document's (issue 7 step 4: accents, case, several given names).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# ICAO 9303-3 §6.A: letters whose recommended transliteration is not "drop the accent".
_ICAO_SPECIAL = {
    "Ä": "AE", "Å": "AA", "Æ": "AE", "Ö": "OE", "Ø": "OE", "Œ": "OE", "Ü": "UE",
    "ß": "SS", "ẞ": "SS", "Þ": "TH", "Ð": "D", "Đ": "D", "Ħ": "H", "Ł": "L", "Ŀ": "L",
    "Ŋ": "N", "Ĳ": "IJ", "\u0131": "I",  # dotless i
}
# ICAO 9303-3 §6 Table B: Cyrillic, the general column (the state-specific variants, e.g.
# Ukrainian Г -> H, are the issuing state's choice and not applied). The soft sign is omitted.
_CYRILLIC = dict(zip(
    "АБВГҐДЂЃЕЁЄЖЗЅИІЇЙЈКЛЉМНЊОПРСТЋЌУЎФХЦЧЏШЩЪЫЬЭЮЯ",
    ("A", "B", "V", "G", "G", "D", "D", "G", "E", "E", "IE", "ZH", "Z", "DZ", "I", "I", "I",
     "I", "J", "K", "L", "LJ", "M", "N", "NJ", "O", "P", "R", "S", "T", "C", "K", "U", "U",
     "F", "KH", "TS", "CH", "DZ", "SH", "SHCH", "IE", "Y", "", "E", "IU", "IA"),
    strict=True))
_ICAO_SPECIAL.update(_CYRILLIC)
# The same letters folded to their base letter (how people often type them).
_PLAIN_SPECIAL = {
    "Ä": "A", "Å": "A", "Æ": "AE", "Ö": "O", "Ø": "O", "Œ": "OE", "Ü": "U",
    "ß": "SS", "ẞ": "SS", "Þ": "TH", "Ð": "D", "Đ": "D", "Ħ": "H", "Ł": "L", "Ŀ": "L",
    "Ŋ": "N", "Ĳ": "IJ", "\u0131": "I",  # dotless i
    **_CYRILLIC,
}
# Whitespace, hyphen-minus, the Unicode hyphens and dashes, and the MRZ filler.
_SEPARATORS = re.compile("[\\s\\-\u2010\u2011\u2012\u2013\u2014<]+")
# Apostrophes (ASCII, typographic, grave, acute) and dots vanish: O'Brien -> OBRIEN.
_DROPPED = re.compile("['\u2019\u2018`\u00b4.,]")
MAX_NAME = 200


class NameInvalid(ValueError):
    """A name that cannot be written in the MRZ alphabet or is not a name at all."""


def _fold(text: str, special: dict[str, str]) -> str:
    out: list[str] = []
    for char in unicodedata.normalize("NFC", text).upper():
        if char in special:
            out.append(special[char])
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", char)
                       if not unicodedata.combining(c))
        out.append(base)
    return "".join(out)


def words(text: str, *, icao: bool = False) -> tuple[str, ...]:
    """The words of a name, upper case, accents folded, hyphens and spaces as breaks.

    `icao=True` folds the ICAO way (Ü -> UE); the default folds to the base letter.
    """
    if not isinstance(text, str) or len(text) > MAX_NAME:
        raise NameInvalid(f"a name is a string of at most {MAX_NAME} characters")
    folded = _fold(_DROPPED.sub("", text), _ICAO_SPECIAL if icao else _PLAIN_SPECIAL)
    parts = tuple(p for p in _SEPARATORS.split(folded) if p)
    for part in parts:
        if not re.fullmatch(r"[A-Z]+", part):
            raise NameInvalid(f"{text!r} has characters outside the Latin alphabet")
    return parts


def to_mrz(text: str) -> str:
    """A name part in the MRZ alphabet: A-Z with '<' between words (ICAO 9303-3 §6)."""
    return "<".join(words(text, icao=True))


def _forms(text: str) -> set[tuple[str, ...]]:
    """Both foldings of a name; none when it cannot be written in the MRZ alphabet (a
    digit, a script without an ICAO table): such a name matches no document."""
    try:
        return {words(text), words(text, icao=True)}
    except NameInvalid:
        return set()


@dataclass(frozen=True)
class NameComparison:
    surname_matches: bool
    given_names_match: bool

    @property
    def matches(self) -> bool:
        return self.surname_matches and self.given_names_match


def compare(requester_given: str, requester_surname: str,
            document_given: Iterable[str], document_surname: str) -> NameComparison:
    """Does the requester's spelling name the document's holder?

    Case and accents never matter; either accent folding is accepted ("Müller" matches
    MRZ "MUELLER" and a typed "Muller"); hyphens and spaces are the same break.
    Surname: the same words in the same order. Given names: the requester's words are
    the document's first given names in order ("Anna" matches "Anna Maria"; "Maria"
    alone does not: a signature name starts with the first given name). Never raises:
    a name that cannot be written in the MRZ alphabet ("Curie2") matches nothing, so
    the signer sees a difference to have corrected (issue 17).
    """
    doc_given_text = " ".join(document_given)
    surname_ok = any(a == b for a in _forms(requester_surname) for b in _forms(document_surname))
    given_ok = False
    for mine in _forms(requester_given):
        for theirs in _forms(doc_given_text):
            if mine and tuple(theirs[:len(mine)]) == mine:
                given_ok = True
    return NameComparison(surname_ok, given_ok)


def display(name_words: Iterable[str]) -> str:
    """Words from an MRZ in the case people read ("ANNA MARIA" -> "Anna Maria")."""
    return " ".join(w.capitalize() for w in name_words)
