"""Photographed documents the MRZ bench once refused (bench/identity.py mrz, issue 17),
pinned: each goes through the reference service's whole document step (MRZ, check
digits, printed-zone cross-check) and yields exactly the drawn identity. The documents
come from portal/identity/sample_documents.py (index, seed); the portraits are the
public-domain samples of portal/identity/portraits.py."""

from __future__ import annotations

import pytest

from portal.identity import sample_documents
from portal.identity.model import DocumentKind
from portal.identity.mrz import DocumentFormat
from tests.support.identity_fixtures import make_service

HARD = {
    # The printed surname NG dropped as noise by sparse-text OCR (page layout reads it).
    "short-surname": (109, 955756839),
    # DE read as OF and FERNANDEZ split in two by sparse-text OCR.
    "particle": (46, 573808401),
    # Ó read as a copyright sign or a 6: a one-letter name word.
    "accented-initial": (104, 1045424534),
    # Tesseract read 0 as N in the number and a 1-for-I swap made the check digit
    # verify: the OCR-B shapes' right reading was never offered to the printed zone.
    "misread-number": (48, 591598836),
    # Printed UFO010174 is one slip from the right UF0010174 and from UFO01Q174, a
    # reading two look-alike swaps made verify: only the fewest swaps are offered.
    "one-slip-from-two": (74, 297195012),
    # The specks of the card's edge bridged the TD1 zone's last two lines into one row.
    "edge-specks": (327, 314936761),
    # One assembly read the state B, another D: B, a code no state has, decided that
    # the passport was not accepted.
    "state-code": (644, 795221813),
    # The printed number's T read as 1 (1T1950489): a printed-zone slip.
    "printed-t": (214, 604662201),
    # The shapes verified NWO3O486O with no swap, tesseract NW0304860 with one: the
    # printed zone shows the latter exactly.
    "exact-print-wins": (218, 362131753),
    # Ó printed and read alone as 6: the one-letter name word O.
    "lone-accented": (256, 223526570),
    # Next to the portrait's frame sparse-text mode lost or misread the printed number's
    # first letters (UJ7801161 read 17801 and 161; TM7147887 read 7147887; TT7215024
    # read 717215024), or read an O for its 0 where another reading is one slip away
    # too (CRO760052): each number read again alone, in single-line mode.
    "number-split": (496, 553470863),
    "number-letters-lost": (569, 1020349154),
    "number-two-slips": (431, 944573440),
    "number-tie": (585, 627585518),
    # The page shows LD1763402; the number read again with a whitelist made it
    # 1D1763402, the L/1 twin: the second chance is asked only when the page gives no
    # answer.
    "twin-in-second-read": (40, 513133851),
    # A speck past the second line's end taken for its last place: the zone was
    # straightened with a shear and not found.
    "speck-past-the-line": (194, 536821093),
}


@pytest.mark.parametrize("case", sorted(HARD))
def test_a_once_refused_photograph_yields_the_drawn_identity(case: str) -> None:
    index, seed = HARD[case]
    doc, photos = sample_documents.photographed(index, seed)
    kind = (DocumentKind.ID_CARD if doc.data.format is DocumentFormat.TD1
            else DocumentKind.PASSPORT)
    service, _ = make_service()
    session = service.open_session("signer-1", kind).id
    for side in kind.sides:
        service.submit_side(session, side, photos[side])
    identity = service.document_identity(session)
    drawn = doc.data
    assert (identity.document_number, identity.birth_date, identity.expiry_date) == (
        drawn.document_number, drawn.birth_date, drawn.expiry_date)
    name_line = doc.mrz_lines[-1] if drawn.format is DocumentFormat.TD1 else doc.mrz_lines[0]
    assert "<".join((*identity.surname, "", *identity.given_names)) in name_line
