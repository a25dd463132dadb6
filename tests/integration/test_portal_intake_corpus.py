"""Every file of the third-party corpus, and damaged copies of each (bytes flipped, cut
short: a fixed seed), through the portal's document intake (portal/intake.inspect, as
POST /api/v1/transactions runs it): each is accepted or refused with PDF_INVALID (422),
never an exception that would be a 500, and none hangs. pyHanko's reader let zlib.error
(a corrupt compressed object stream) and AssertionError (a broken xref stream) escape
the active-content scan before."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support.intake_corpus import inputs
from tests.support.line_deadline import lines_within

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
