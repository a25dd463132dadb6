"""The printed zone decides what the MRZ's check digits cannot (issue 17): a G read as
6, an L as 1, a number two misreads made verify. No wrong reading is ever accepted."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.identity import mrz
from portal.identity.model import IdentityError
from tests.support.printed_zone import confirmed


def _td3(number: str) -> tuple[str, ...]:
    return mrz.compose_td3(issuing_state="FRA", document_number=number,
                           birth_date=dt.date(1990, 5, 17), sex="F",
                           expiry_date=dt.date(2031, 1, 1), nationality="FRA",
                           surname="Martin", given_names="Lea")


READ_6K = (lambda lines: (lines[0], "6" + lines[1][1:]))(_td3("GK3511900"))
PRINTED = ("SPECIMEN", "SURNAME", "MARTIN", "DOCUMENT", "NO", "GK3511900", "17", "05",
           "1990")


def test_the_printed_number_picks_g_where_the_mrz_was_read_6() -> None:
    readings = mrz.readings(READ_6K)
    assert readings[0].document_number == "6K3511900"  # tesseract's own reading
    assert confirmed(readings, PRINTED).document_number == "GK3511900"


def test_a_reading_the_printed_zone_does_not_confirm_is_refused() -> None:
    """The issue's wrong read, 6K3511900 with every check digit right, alone."""
    wrong = mrz.parse(READ_6K)
    with pytest.raises(IdentityError) as caught:
        confirmed((wrong,), PRINTED)
    assert caught.value.code == "PRINTED_UNREADABLE"  # looks alike: a better picture
    with pytest.raises(IdentityError) as caught:
        confirmed((wrong,), ("MARTIN", "XY9999999"))
    assert caught.value.code == "SIDES_MISMATCH"


def test_an_unreadable_printed_number_leaves_nothing_accepted() -> None:
    readings = mrz.readings(READ_6K)
    for printed in (("MARTIN",), ("GK351I900",), ("6K3511900", "GK3511900")):
        with pytest.raises(IdentityError):
            confirmed(readings, printed)


def test_numbers_two_misreads_made_verify_are_refused() -> None:
    lines = _td3("SB2O58Z37")
    misread = (lines[0], "582058237" + lines[1][9:])
    wrong = mrz.readings(misread)
    assert wrong and all(r.document_number != "SB2O58Z37" for r in wrong)
    with pytest.raises(IdentityError):
        confirmed(wrong, ("MARTIN", "SB2O58Z37"))


def test_a_printed_number_misread_in_two_places_asks_for_a_better_picture() -> None:
    """TT7215024 printed and read 717215024 (bench seed 944573440): the card's own
    number misread, not another card's (SIDES_MISMATCH blamed a good document)."""
    readings = mrz.readings(_td3("TT7215024"))
    with pytest.raises(IdentityError) as caught:
        confirmed(readings, ("MARTIN", "717215024"))
    assert caught.value.code == "PRINTED_UNREADABLE"
    with pytest.raises(IdentityError) as caught:
        confirmed(readings, ("MARTIN", "XK0953381"))
    assert caught.value.code == "SIDES_MISMATCH"


def test_printed_look_alikes_are_never_twins_of_equal_check_value() -> None:
    """A printed slip is accepted only where the MRZ's check digit covers the place:
    at a character with no twin (mrz.TWINS), read as a look-alike of another value
    (ICAO 9303-3 §4.9); T as 1 or 7 and U as V included."""
    from portal.identity.printed import _PRINTED_LOOKALIKES

    pairs = [(c, a) for c, alikes in _PRINTED_LOOKALIKES.items() if c not in mrz.TWINS
             for a in alikes]
    assert ("T", "1") in pairs and ("U", "V") in pairs
    assert all(mrz.check_digit(a) != mrz.check_digit(c) for c, a in pairs)


def test_a_one_slip_tie_goes_to_the_reading_with_fewer_swaps() -> None:
    """Printed UFO010174 is one slip from UF0010174 (read as it is) and from
    UFO01Q174 (two look-alikes swapped to verify, bench seed 297195012)."""
    right = mrz.parse(_td3("UF0010174"))
    other = mrz.parse(_td3("UFO01Q174"))
    from portal.identity.printed import candidates

    picked = candidates((other, right), ("MARTIN", "UFO010174"), (2, 0))
    assert [r.document_number for r in picked] == ["UF0010174"]
    with pytest.raises(IdentityError):
        candidates((other, right), ("MARTIN", "UFO010174"), (0, 0))
