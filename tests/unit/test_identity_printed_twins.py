"""The printed zone confirms only what the MRZ's check digits cannot (issue 17, ICAO
9303-3 §4.9): an equal-value twin (G/6, L/1, K/<) exactly, one look-alike slip of
another value (O/0) in the printed number or one digit in a printed date at most, and
every name word, transliterated per 9303-3 §6, with OCR noise only where the two MRZ
readers (tesseract, OCR-B shapes) read the name alike. No wrong reading is accepted."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.identity import mrz
from portal.identity.model import DocumentKind, IdentityError, SideResult
from portal.identity.printed import cross_check
from portal.identity.specimen import Side
from tests.support.printed_zone import confirmed

BIRTH, EXPIRY = dt.date(1990, 5, 17), dt.date(2031, 1, 1)
DATES = ("17", "05", "1990", "01", "01", "2031")


def _td3(number: str, surname: str = "Martin", given: str = "Lea") -> tuple[str, str]:
    return mrz.compose_td3(issuing_state="DNK", document_number=number, birth_date=BIRTH,
                           sex="F", expiry_date=EXPIRY, nationality="DNK",
                           surname=surname, given_names=given)


def _code(printed: tuple[str, ...], readings: tuple[mrz.Mrz, ...]) -> str | None:
    try:
        confirmed(readings, printed)
    except IdentityError as exc:
        return exc.code
    return None


def test_the_derived_twins_are_the_look_alikes_of_equal_value() -> None:
    assert mrz.TWINS == {"1": "L", "L": "1", "6": "G", "G": "6", "K": "<", "<": "K"}
    for char, twins in mrz.TWINS.items():
        assert all(mrz.check_digit(t) == mrz.check_digit(char) for t in twins)


def test_a_g6_twin_is_refused_when_the_printed_zone_disagrees_there() -> None:
    lines = _td3("GK3511900")
    read_6 = (lines[0], "6" + lines[1][1:])
    readings = mrz.readings(read_6)
    assert {r.document_number for r in readings} >= {"GK3511900", "6K3511900"}
    # The printed zone shows 6 where the truth is G: one place, but a twin's place.
    assert _code(("6K3511900",), (mrz.parse(lines),)) == "PRINTED_UNREADABLE"
    # A slip at a twin's place (1 read I) decides nothing either.
    assert _code(("GK35I1900",), readings) == "PRINTED_UNREADABLE"
    # A slip the check digit covers (0 read O) still lets the printed G decide.
    assert confirmed(readings, ("GK35119O0",)).document_number == "GK3511900"


def test_an_o0_misread_is_caught_by_the_check_digit_not_the_printed_zone() -> None:
    lines = _td3("MR0028925")
    read_o = (lines[0], "MRO" + lines[1][3:])
    with pytest.raises(mrz.MrzInvalid):
        mrz.parse(read_o)  # the check digit refuses the O
    readings = mrz.readings(read_o)
    assert [r.document_number for r in readings] == ["MR0028925"]
    # The printed zone may show the O too: one slip of another value is covered.
    assert confirmed(readings, ("MRO028925",)).document_number == "MR0028925"
    # Two slips could be two misreads that cancel in the check digit: refused.
    assert _code(("MRO0Z8925",), readings) == "PRINTED_UNREADABLE"
    assert _code(("MROO28925",), readings) == "PRINTED_UNREADABLE"


def test_two_misreads_that_verify_are_never_accepted() -> None:
    lines = _td3("SB2O58Z37")
    wrong = mrz.readings((lines[0], "582058237" + lines[1][9:]))
    assert all(r.document_number != "SB2O58Z37" for r in wrong)
    for printed in (("SB2O58Z37",), ("SB2058Z37",), ("5B2O58Z37",)):
        assert _code(printed, wrong) is not None


def _side(lines: tuple[str, str], words: tuple[str, ...],
          agreed: tuple[str, ...] = ()) -> SideResult:
    reading = mrz.parse(lines)
    return SideResult(Side.DATA_PAGE, True, words, reading, (reading,), agreed=agreed)


def _cross(side: SideResult) -> str | None:
    try:
        identity = cross_check(DocumentKind.PASSPORT, side, side)
    except IdentityError as exc:
        return exc.code
    assert identity.document_number == "AB0123456"
    return None


def test_a_name_with_o_slash_printed_as_such_is_the_mrz_oe() -> None:
    lines = _td3("AB0123456", surname="Sørensen", given="Åse")
    assert lines[0].startswith("P<DNKSOERENSEN<<AASE<")
    assert _cross(_side(lines, ("SØRENSEN", "ÅSE", "AB0123456", *DATES))) is None
    # Tesseract's 0 for Ø is a name's O.
    assert _cross(_side(lines, ("S0RENSEN", "ÅSE", "AB0123456", *DATES))) is None


def test_printed_name_noise_only_where_both_mrz_readers_agree() -> None:
    lines = _td3("AB0123456", surname="Sørensen", given="Åse")
    noisy = ("SDRENSEN", "ASE", "AB0123456", *DATES)  # Ø read as D
    assert _cross(_side(lines, noisy)) == "PRINTED_UNREADABLE"
    half = (lines[0][:5] + "SOERENSEN<<AAS?" + lines[0][20:], lines[1])
    assert _cross(_side(lines, noisy, agreed=half)) == "PRINTED_UNREADABLE"
    assert _cross(_side(lines, noisy, agreed=lines)) is None
    # Two edits are another name, whatever the readers say.
    assert _cross(_side(lines, ("SDRENSFN", "ASE", "AB0123456", *DATES),
                        agreed=lines)) == "PRINTED_UNREADABLE"


def test_a_printed_date_confirms_with_one_digit_misread_never_two() -> None:
    lines = _td3("AB0123456")
    base = ("MARTIN", "LEA", "AB0123456", "01", "01", "2031")
    assert _cross(_side(lines, (*base, "17", "05", "1990"))) is None
    assert _cross(_side(lines, (*base, "17", "05", "1980"))) is None
    assert _cross(_side(lines, (*base, "17", "06", "1980"))) == "PRINTED_UNREADABLE"


def test_a_number_printed_in_two_groups_or_with_a_glyph_read_twice() -> None:
    lines = _td3("YC7478573")
    readings = (mrz.parse(lines),)
    assert confirmed(readings, ("YC747", "8573")).document_number == "YC7478573"
    assert confirmed(readings, ("YYC7478573",)).document_number == "YC7478573"
    assert confirmed(readings, ("YC74785S73",)).document_number == "YC7478573"
    # A doubled glyph is that place's one slip: no other slip beside it.
    assert _code(("YYC747857S",), readings) is not None
    # A look-alike pair beside a twin shows both twins: it confirms neither.
    twin = _td3("YC7476573")
    assert _code(("YC7476G573",), (mrz.parse(twin),)) is not None


def test_a_number_with_one_of_two_equal_glyphs_run_together() -> None:
    readings = (mrz.parse(_td3("JJ0424435")),)
    assert confirmed(readings, ("J", "0424435")).document_number == "JJ0424435"
    assert _code(("J042443",), readings) is not None  # a glyph lost that had no twin
    assert _code(("JO424435",), readings) is not None  # and a second slip
