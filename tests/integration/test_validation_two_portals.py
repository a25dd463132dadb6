"""Two portal processes on one database, as behind the load balancer: a client's
validation report, uploaded to one `qsign portal serve`, is fetched again by its SHA-256
from the other, in every form (the /validate page's XML and PDF buttons may reach
either process). Before, the report was kept in the memory of the process that made
it, and the other answered NOT_FOUND.

The signed PDF is from the corpus vendored in tests/corpus/pdf (MIT, see its README)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.store import Store
from tests.support.portal_process import PortalProcess, running_portal
from validation.report import FileReport, SignatureReport, TrustedListStatus

SIGNED = Path(__file__).parents[1] / "corpus" / "pdf" / "minimal-two-fields-signed-twice.pdf"


@pytest.fixture(scope="module")
def portals(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[PortalProcess, PortalProcess]]:
    """Two processes on one state directory (one SQLite database), each its own port."""
    directory = tmp_path_factory.mktemp("portals")
    (directory / "two").mkdir()
    with running_portal(directory) as one:
        two = PortalProcess(directory / "two", state=one.state)
        two.start()
        try:
            yield one, two
        finally:
            two.stop()


def _http(portal: PortalProcess, method: str, path: str, accept: str,
          body: bytes | None = None) -> tuple[int, str, bytes]:
    headers = {"Accept": accept} | ({"Content-Type": "application/pdf"} if body else {})
    request = urllib.request.Request(portal.base + path, method=method,  # noqa: S310
                                     headers=headers, data=body)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()


def _json(answer: tuple[int, str, bytes]) -> tuple[int, Any]:
    return answer[0], json.loads(answer[2])


def test_a_report_made_by_one_process_is_fetched_from_the_other(
        portals: tuple[PortalProcess, PortalProcess]) -> None:
    one, two = portals
    status, report = _json(_http(one, "POST", "/api/v1/validations?name=lease.pdf",
                                 "application/json", SIGNED.read_bytes()))
    assert status == 200, report
    assert len(report["signatures"]) == 2
    path = f"/api/v1/validations/{report['sha256']}"
    assert _json(_http(two, "GET", path, "application/json")) == (200, report)
    status, kind, xml = _http(two, "GET", path, "application/xml")
    assert (status, kind) == (200, "application/xml") and b"ValidationReport" in xml
    status, kind, pdf = _http(two, "GET", path, "application/pdf")
    assert (status, kind) == (200, "application/pdf") and pdf.startswith(b"%PDF-")
    assert _http(one, "GET", path, "application/xml")[2] == xml  # one report, both ways
    status, refused = _json(_http(two, "GET", "/api/v1/validations/" + "0" * 64,
                                  "application/json"))
    assert (status, refused["error"]) == (404, "NOT_FOUND")


def _report(sha256: str) -> FileReport:
    """A report with every field set, datetimes included."""
    when = dt.datetime(2026, 12, 5, 7, 30, 1, 250, tzinfo=dt.UTC)
    return FileReport(
        "lease.pdf", sha256,
        (SignatureReport("Signature1", "TOTAL-PASSED", None, "QES", None, "Marie Curie",
                         when, "timestamp", "ENTIRE_FILE", "whole file", "B-LTA"),
         SignatureReport("Signature2", "INDETERMINATE", "NO_POE", "Indeterminate QES",
                         "no proof of existence", None, None, "none", "PARTIAL",
                         "revision 1 of 2", "B-B")),
        (TrustedListStatus("https://tl.example.test/FR.xml", "FR", True, None, when,
                           "https://lotl.example.test/eu-lotl.xml"),
         TrustedListStatus("/etc/qsign/broken.xml", None, False, "signature fails")),
        b"<ValidationReport/>")


def test_the_store_keeps_a_whole_report_for_a_while(database_url: str,
                                                     tmp_path: Path) -> None:
    """The table's SQL on SQLite and PostgreSQL, each Store a process's connection: a
    report comes back whole (its XML and every field), the latest one of a file wins,
    the report is the bucket's own, and reports kept before the cut-off are gone."""
    now = dt.datetime(2026, 12, 5, 8, 0, tzinfo=dt.UTC)
    one, two = (Store.open(database_url, tmp_path, clock=lambda: now) for _ in range(2))
    try:
        first, second = _report("a" * 64), _report("b" * 64)
        one.keep_validation_report("addr:1", first.sha256, json.dumps(first.stored()))
        kept = two.validation_report("addr:1", first.sha256, now - dt.timedelta(minutes=5))
        assert kept is not None and FileReport.from_stored(json.loads(kept)) == first
        assert FileReport.from_stored(json.loads(kept)).xml == first.xml
        assert two.validation_report("addr:2", first.sha256, now) is None
        newer = FileReport(first.name, first.sha256, first.signatures[:1], (), b"")
        two.keep_validation_report("addr:1", first.sha256, json.dumps(newer.stored()))
        kept = one.validation_report("addr:1", first.sha256, now)
        assert kept is not None and FileReport.from_stored(json.loads(kept)) == newer
        assert one.validation_report("addr:1", first.sha256,
                                     now + dt.timedelta(seconds=1)) is None  # too old
        # The sweeper forgets those kept before the cut-off, from the table.
        one.keep_validation_report("addr:3", second.sha256, json.dumps(second.stored()))
        two.expire_validation_reports(now)
        assert one.validation_report("addr:3", second.sha256, now) is not None
        one.expire_validation_reports(now + dt.timedelta(seconds=1))
        for bucket, sha256 in (("addr:1", first.sha256), ("addr:3", second.sha256)):
            assert two.validation_report(bucket, sha256, now - dt.timedelta(days=1)) is None
    finally:
        one.close()
        two.close()
