"""Every file of the third-party corpus, and damaged copies of each (bytes flipped, cut
short: a fixed seed), through the portal's document intake (portal/intake.inspect, as
POST /api/v1/transactions runs it): each is accepted or refused with PDF_INVALID (422),
never an exception that would be a 500, and none hangs. pyHanko's reader let zlib.error
(a corrupt compressed object stream) and AssertionError (a broken xref stream) escape
the active-content scan before."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from portal import intake
from portal.errors import Code, PortalError
from tests.support.intake_corpus import inputs
from tests.support.line_deadline import lines_within
from tests.support.pdfs import blank_pdf
from validation import ValidationSettings, validate_pdf

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "pdf"  # ../shared/corpus/pdf, vendored
PER_INPUT_S = 30  # an input the intake has not answered for in this long hangs it
DAMAGED = 4  # copies per file


def test_corpus_and_damaged_copies_are_accepted_or_refused(tmp_path: Path) -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    assert len(files) > 100
    names = [name for name, _ in inputs(files, DAMAGED, 16)]
    argv = [sys.executable, "-m", "tests.support.intake_corpus", "--damaged", str(DAMAGED),
            *map(str, files)]
    answers = [json.loads(line) for line in
               lines_within(argv, names, PER_INPUT_S, tmp_path / "stderr")]
    assert [a["input"] for a in answers] == names
    escaped = [a for a in answers if "escaped" in a]
    assert not escaped, escaped
    assert {a["code"] for a in answers if "code" in a} <= {"PDF_INVALID"}
    accepted = [a for a in answers if "accepted" in a]
    assert len(accepted) > 100 and all(a["accepted"] >= 1 for a in accepted)


def malformed_real(pdf: bytes) -> bytes:
    """`pdf` with an incremental update adding an annotation whose /Rect holds `1.2.3`,
    no real number (ISO 32000-2 §7.3.3): pyHanko's reader raises decimal's
    InvalidOperation on it."""
    root = re.findall(rb"/Root (\d+ \d+ R)", pdf)[-1]
    previous = int(re.findall(rb"startxref\s+(\d+)", pdf)[-1])
    size = int(re.findall(rb"/Size (\d+)", pdf)[-1])
    added = b"\n%d 0 obj\n<< /Type /Annot /Rect [0 0 1.2.3 4] >>\nendobj\n" % size
    return pdf + added + (
        b"xref\n%d 1\n%010d 00000 n \ntrailer\n<< /Size %d /Root %s /Prev %d >>\n"
        b"startxref\n%d\n%%%%EOF\n" % (size, len(pdf) + 1, size + 1, root, previous,
                                       len(pdf) + len(added)))


def test_a_malformed_real_number_is_unchecked_not_a_crash() -> None:
    """Found by the damaged corpus (broken-objstream5.pdf): accepted under "warn" with
    the object it could not read named as unchecked, refused under "refuse"; the
    validator answers too."""
    pdf = malformed_real(blank_pdf())
    inspected = intake.inspect(pdf, 0, intake.ContentPolicy.WARN)
    assert inspected.pages == 1 and "unchecked" in [k.value for k in inspected.content.kinds]
    with pytest.raises(PortalError) as refused:
        intake.inspect(pdf, 0, intake.ContentPolicy.REFUSE)
    assert refused.value.code is Code.PDF_ACTIVE_CONTENT
    assert validate_pdf(pdf, ValidationSettings.empty()).signatures == ()
