"""Property test: whatever a PDF becomes (bytes flipped, cut short), validate_pdf answers
a report or a typed ValidationError, never another exception (issue 16: no file crashes
the validator). Seeds: a third-party PAdES B-LTA with two signatures and a DSS from the
corpus, and pyHanko's own output (compressed streams, an xref stream), where its reader
let zlib.error and AssertionError through before."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.pdfs import blank_pdf
from validation import ValidationError, ValidationSettings, validate_pdf

SEEDS = {"corpus-b-lta": (Path(__file__).resolve().parents[1] / "corpus" / "pdf"
                          / "pades-lta-dss-indirect-arrs-test.pdf").read_bytes(),
         "pyhanko-written": blank_pdf(2)}
EMPTY = ValidationSettings.empty()


@pytest.fixture(autouse=True, scope="module")
def _quiet() -> None:
    # pyHanko logs every failed validation step with a traceback.
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)


@pytest.mark.parametrize("seed", sorted(SEEDS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0.5, 1)))
def test_a_damaged_pdf_is_a_report_or_a_typed_error(
        seed: str, flips: list[tuple[float, int]], cut: float | None) -> None:
    data = bytearray(SEEDS[seed])
    for where, value in flips:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    try:
        report = validate_pdf(bytes(data), EMPTY)
    except ValidationError as exc:
        assert exc.code in ValidationError.CODES
        return
    assert all(s.indication in {"TOTAL-PASSED", "TOTAL-FAILED", "INDETERMINATE"}
               for s in report.signatures)
    report.to_json()


def test_a_damaged_signing_date_is_no_claimed_time() -> None:
    """Hypothesis found it in CI: one byte of the B-LTA's /M turned into '*'
    (D:*0201101010000+01'00'); pyHanko's date parser raised PdfReadError through the
    report."""
    data = bytearray(SEEDS["corpus-b-lta"])
    data[int(0.5454753289353333 * len(data))] = 42
    report = validate_pdf(bytes(data), EMPTY)
    assert report.signatures and all(s.indication in {"TOTAL-PASSED", "TOTAL-FAILED",
                                                      "INDETERMINATE"}
                                     for s in report.signatures)
    report.to_json()
