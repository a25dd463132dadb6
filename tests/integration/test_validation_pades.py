"""validation/ on PDFs signed here by the portal's PAdES stack with our CA (TSA, OCSP on
loopback), judged under the CA's demo trusted lists (issue 16 acceptance), and on the
third-party corpus through `qsign validate`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from ca.authority import Authority
from ca.profiles import Validity
from ca.trusted_list import list_of_lists, trusted_list
from ca.tsa import TimestampAuthority
from tests.support.cli import run_qsign
from tests.support.line_deadline import lines_within
from tests.support.pdfs import blank_pdf
from tests.support.portal_pki import PortalPki, SoftwareSigner, running_pki
from tests.support.validation_pki import DemoLists, demo_lists, page_changed, restamped, sign
from validation import FileReport, ValidationSettings, validate_pdf

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "pdf"  # ../shared/corpus/pdf, vendored
PER_FILE_S = 60  # a file the validator has not answered for in this long hangs it


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalPki]:
    yield from running_pki(tmp_path_factory.mktemp("validation-pki") / "ca")


@pytest.fixture(scope="module")
def alice(pki: PortalPki) -> SoftwareSigner:
    return pki.issue("p256", "Martin")


@pytest.fixture(scope="module")
def lists(pki: PortalPki, tmp_path_factory: pytest.TempPathFactory) -> DemoLists:
    # Withdrawn (to the second, as lists write it) before every signature of this module.
    withdrawn_at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    return demo_lists(pki, tmp_path_factory.mktemp("lists"), withdrawn_at)


@pytest.fixture(scope="module")
def b_lt(pki: PortalPki, alice: SoftwareSigner, lists: DemoLists) -> bytes:
    return sign(pki, blank_pdf(), alice, "B-LT")


@pytest.fixture(scope="module")
def b_lta(pki: PortalPki, alice: SoftwareSigner, lists: DemoLists) -> bytes:
    return sign(pki, blank_pdf(), alice, "B-LTA")


def _under(lists: DemoLists, tl: Path, pdf: bytes, **kwargs: bool) -> FileReport:
    settings = ValidationSettings.load([str(tl)], operator_certs=[lists.operator], **kwargs)
    return validate_pdf(pdf, settings, name="contract.pdf")


@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
@pytest.mark.parametrize("through", ["tl", "lotl"])
def test_our_signatures_are_qes(lists: DemoLists, b_lt: bytes, b_lta: bytes, level: str,
                                through: str) -> None:
    report = _under(lists, lists.granted if through == "tl" else lists.lotl,
                    b_lt if level == "B-LT" else b_lta)
    assert all(t.ok for t in report.trusted_lists), report.trusted_lists
    assert len(report.trusted_lists) == (1 if through == "tl" else 2)
    (signature,) = report.signatures
    assert (signature.indication, signature.sub_indication) == ("TOTAL-PASSED", None)
    assert signature.qualification == "QES" and signature.qualification_reason is None
    assert signature.signer == "Alice Martin" and signature.time_source == "timestamp"
    assert signature.signing_time is not None and signature.signing_time > lists.withdrawn_at
    assert signature.level == level and signature.coverage == "ENTIRE_REVISION"
    assert report.passed
    document = report.to_json()
    assert document["signatures"][0]["subIndication"] is None
    assert document["signatures"][0]["signingTime"].endswith("Z")
    xml = ElementTree.fromstring(report.to_xml())  # noqa: S314 - the validator's own output
    status = xml.find(".//{http://uri.etsi.org/19102/v1.2.1#}MainIndication")
    assert status is not None and status.text is not None
    assert status.text.endswith("total-passed")
    quality = xml.find(".//{http://uri.etsi.org/19102/v1.2.1#}SignatureQualityInformation")
    assert quality is not None and quality.text == "urn:qsign:validation:qualification:QES"


def test_b_lta_still_qes_after_its_revocation_data_went_stale(lists: DemoLists,
                                                              b_lta: bytes) -> None:
    """Validated as of 400 days later (the DSS's OCSP response long stale): the document
    timestamp is the proof of existence that past signature validation needs (EN 319
    102-1 §5.6.2.4)."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    settings = ValidationSettings.load([str(lists.granted)], operator_certs=[lists.operator])
    (signature,) = validate_pdf(b_lta, settings, at=later).signatures
    assert (signature.indication, signature.qualification) == ("TOTAL-PASSED", "QES")


@pytest.mark.parametrize("days", [2, 30])
def test_b_lt_still_qes_days_later_offline(lists: DemoLists, b_lt: bytes, days: int) -> None:
    """A B-LT validated offline days after signing: its OCSP response, issued after the
    signature timestamp and covering that time, is fresh enough (EN 319 102-1 §5.2.5
    freshness checker, §5.6.2.4 past signature validation); pyHanko's default asked for
    data fresher than the validation time (INDETERMINATE/TRY_LATER after an hour)."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    settings = ValidationSettings.load([str(lists.granted)], operator_certs=[lists.operator])
    (signature,) = validate_pdf(b_lt, settings, at=later).signatures
    assert (signature.indication, signature.sub_indication) == ("TOTAL-PASSED", None)
    assert signature.qualification == "QES" and signature.level == "B-LT"
    # Data older than the accepted age before the timestamp does not cover it.
    strict = dataclasses.replace(settings, revocation_max_age=-dt.timedelta(hours=1))
    (signature,) = validate_pdf(b_lt, strict, at=later).signatures
    assert signature.indication == "INDETERMINATE" and signature.qualification != "QES"


def test_stale_revocation_data_needs_a_trusted_timestamp(
        pki: PortalPki, alice: SoftwareSigner, lists: DemoLists,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The freshness is judged at the timestamp's time only because the timestamp proves
    it: the same B-LT re-stamped by a TSA on no list used is not TOTAL-PASSED, days
    later (its OCSP response stale) or now."""
    other = TimestampAuthority(Authority.init(tmp_path_factory.mktemp("other-tsa") / "ca"))
    forged = restamped(sign(pki, blank_pdf(), alice, "B-LT"), other)
    settings = ValidationSettings.load([str(lists.granted)], operator_certs=[lists.operator])
    for at in (None, dt.datetime.now(dt.UTC) + dt.timedelta(days=2)):
        (signature,) = validate_pdf(forged, settings, at=at).signatures
        assert signature.indication == "INDETERMINATE", (at, signature)
        assert signature.time_source != "timestamp" and signature.qualification != "QES"


def test_b_b_and_b_t_without_revocation_data_do_not_pass_offline(
        pki: PortalPki, alice: SoftwareSigner, lists: DemoLists) -> None:
    """The freshness relaxed for B-LT still needs revocation data: a B-B or B-T whose
    file carries none cannot pass offline, now or later."""
    settings = ValidationSettings.load([str(lists.granted)], operator_certs=[lists.operator])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    for level in ("B-B", "B-T"):
        signed = sign(pki, blank_pdf(), alice, level)
        for at in (None, later):
            (signature,) = validate_pdf(signed, settings, at=at).signatures
            assert signature.indication == "INDETERMINATE", (level, at)
            assert signature.qualification != "QES"


def test_withdrawn_before_signing_is_not_qualified(lists: DemoLists, b_lt: bytes) -> None:
    (signature,) = _under(lists, lists.withdrawn, b_lt).signatures
    assert signature.indication == "TOTAL-PASSED"  # the chain is still on the list
    assert signature.qualification == "AdES"
    assert signature.qualification_reason is not None
    assert f"withdrawn on {lists.withdrawn_at:%Y-%m-%d}" in signature.qualification_reason


@pytest.mark.parametrize("use", [True, False])
def test_a_list_past_its_next_update_is_flagged(pki: PortalPki, lists: DemoLists,
                                                b_lt: bytes, tmp_path: Path,
                                                use: bool) -> None:
    """TS 119 612 §5.3.15: a list past its NextUpdate is flagged in the report, and
    used or not as configured (use_expired_lists); a LOTL's expiry drops its lists."""
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)  # NextUpdate 180 days later
    tl, lotl = tmp_path / "tl.xml", tmp_path / "lotl.xml"
    tl.write_bytes(trusted_list(pki.authority, location=tl.as_uri(), issued=issued))
    lotl.write_bytes(list_of_lists(pki.authority, [(lists.granted.as_uri(), "FR",
                                                    lists.operator.read_bytes())],
                                   issued=issued))
    for source, count in ((tl, 1), (lotl, 2)):
        settings = ValidationSettings.load([str(source)], operator_certs=[lists.operator],
                                           use_expired_lists=use)
        report = validate_pdf(b_lt, settings)
        assert len(report.trusted_lists) == count
        first = report.to_json()["trustedLists"][0]
        assert first["ok"] is use and first["problem"].startswith("expired since ")
        assert first["nextUpdate"].endswith("Z")
        assert all(t.ok is use for t in report.trusted_lists), report.trusted_lists
        (signature,) = report.signatures
        if use:
            assert (signature.indication, signature.qualification) == ("TOTAL-PASSED", "QES")
        else:
            assert signature.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"
            assert signature.qualification != "QES"


def test_qualified_only_if_granted_when_the_certificate_was_issued(
        pki: PortalPki, lists: DemoLists, tmp_path: Path) -> None:
    """TS 119 615 §4.3: the issuer's CA/QC service must have been granted when the
    certificate was issued, not only at the signing time (pyHanko checks the latter)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    early = pki.issue_variant(validity=Validity(now - dt.timedelta(days=10),
                                                now + dt.timedelta(days=30)))
    signed = sign(pki, blank_pdf(), early, "B-LT")
    tl = tmp_path / "tl-late.xml"
    tl.write_bytes(trusted_list(pki.authority, location=tl.as_uri(),
                                granted_since=now - dt.timedelta(days=5)))
    (signature,) = _under(lists, tl, signed).signatures
    assert signature.indication == "TOTAL-PASSED"
    assert signature.qualification == "AdES"
    assert signature.qualification_reason is not None
    assert "when the certificate was issued" in signature.qualification_reason


@pytest.mark.parametrize(("qualifier", "qualification"), [("QCNoQSCD", "AdES/QC"),
                                                           ("NotQualified", "AdES")])
def test_list_qualifiers_override_the_certificate(lists: DemoLists, b_lt: bytes,
                                                  qualifier: str, qualification: str) -> None:
    """TS 119 612 §5.5.9.2: the list's qualifiers win over the certificate's own QcSSCD
    and QcCompliance statements (TS 119 615 §4.3)."""
    tl = lists.no_qscd if qualifier == "QCNoQSCD" else lists.not_qualified
    (signature,) = _under(lists, tl, b_lt).signatures
    assert (signature.indication, signature.qualification) == ("TOTAL-PASSED", qualification)
    assert signature.qualification_reason is not None
    assert "qualifiers" in signature.qualification_reason


def test_a_byte_changed_after_signing_is_hash_failure(lists: DemoLists, b_lt: bytes) -> None:
    at = b_lt.index(b"595")  # the page's MediaBox, inside the signed byte range
    tampered = b_lt[:at] + b"596" + b_lt[at + 3:]
    (signature,) = _under(lists, lists.granted, tampered).signatures
    assert (signature.indication, signature.sub_indication) == ("TOTAL-FAILED", "HASH_FAILURE")
    assert signature.qualification == "not AdES"


def test_later_changes_allowed_or_not(pki: PortalPki, alice: SoftwareSigner,
                                      lists: DemoLists, b_lt: bytes) -> None:
    """A second signature after the first is allowed; a page changed after it is not
    (EN 319 102-1 §5.2.9 signature acceptance: INDETERMINATE/SIG_CONSTRAINTS_FAILURE)."""
    first, second = _under(lists, lists.granted,
                           sign(pki, b_lt, alice, "B-LT", field="Signature2")).signatures
    assert (first.indication, first.coverage) == ("TOTAL-PASSED", "ENTIRE_REVISION")
    assert "add signatures" in first.coverage_detail
    assert (second.indication, second.coverage) == ("TOTAL-PASSED", "ENTIRE_REVISION")
    (changed,) = _under(lists, lists.granted, page_changed(b_lt)).signatures
    assert (changed.indication, changed.sub_indication) == ("INDETERMINATE",
                                                            "SIG_CONSTRAINTS_FAILURE")
    assert changed.coverage == "PARTIAL" and "beyond" in changed.coverage_detail
    assert changed.qualification == "Indeterminate QES"


def test_a_revoked_signer_is_revoked(pki: PortalPki, lists: DemoLists) -> None:
    """Revoked before signing (B-T: the portal makes no B-LT for a revoked certificate);
    the validator asks the CA's OCSP responder (online). A signature timestamp proves the
    signature existed before its time, not that it was made after the revocation: EN 319
    102-1 §5.5.4 and §5.6.2.4 give INDETERMINATE/REVOKED_NO_POE (TOTAL-FAILED/REVOKED needs
    proof of creation after it, a content timestamp)."""
    mallory = pki.issue("p256", "Revoked")
    pki.revoke(mallory.serial)
    signed = sign(pki, blank_pdf(), mallory, "B-T")
    (signature,) = _under(lists, lists.granted, signed, online=True).signatures
    assert (signature.indication, signature.sub_indication) == ("INDETERMINATE",
                                                                "REVOKED_NO_POE")
    assert signature.qualification != "QES"
    assert signature.qualification_reason is not None
    assert "certificate is revoked" in signature.qualification_reason


def test_a_trusted_list_whose_signature_fails_is_not_used(lists: DemoLists, b_lt: bytes,
                                                         tmp_path: Path) -> None:
    forged = tmp_path / "forged.xml"
    forged.write_bytes(lists.granted.read_bytes().replace(b"Issuing</Name>",
                                                          b"Issuing!</Name>", 1))
    report = _under(lists, forged, b_lt)
    (status,) = report.trusted_lists
    assert not status.ok and status.problem is not None
    assert "signature not valid" in status.problem
    (signature,) = report.signatures
    assert signature.indication == "INDETERMINATE"
    assert signature.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"
    assert signature.qualification != "QES"
    assert report.to_json()["trustedLists"][0]["ok"] is False


def test_cli_json_and_exit_status(lists: DemoLists, b_lta: bytes, tmp_path: Path) -> None:
    signed, unsigned = tmp_path / "signed.pdf", tmp_path / "unsigned.pdf"
    signed.write_bytes(b_lta)
    unsigned.write_bytes(blank_pdf())
    trust = ["--tl", str(lists.lotl), "--tl-cert", str(lists.operator)]
    done = run_qsign("validate", "--json", *trust, str(signed))
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    answer = json.loads(line)
    assert answer["file"] == "signed.pdf"
    assert answer["signatures"][0]["indication"] == "TOTAL-PASSED"
    assert answer["signatures"][0]["qualification"] == "QES"
    assert answer["signatures"][0]["signer"] == "Alice Martin"
    kept = tmp_path / "report.pdf"
    done = run_qsign("validate", *trust, "--pdf", str(kept), str(signed))
    assert done.returncode == 0, done.stderr
    assert kept.read_bytes().startswith(b"%PDF-")
    done = run_qsign("validate", *trust, str(signed), str(unsigned))
    assert done.returncode == 1
    assert "unsigned.pdf: no signature" in done.stdout
    assert "TOTAL-PASSED, QES, Alice Martin" in done.stdout


def test_corpus_neither_crashes_nor_hangs(tmp_path: Path) -> None:
    """Every PDF of the third-party corpus through `qsign validate --json`, one line per
    file; a file that takes longer than PER_FILE_S fails the test instead of blocking."""
    files = sorted(str(p) for p in CORPUS.rglob("*.pdf"))
    assert len(files) > 100
    errors = tmp_path / "stderr"
    answers = [json.loads(line) for line in lines_within(
        [sys.executable, "-m", "qsign", "validate", "--json", *files], files, PER_FILE_S,
        errors)]
    assert "Traceback" not in errors.read_text()
    for path, answer in zip(files, answers, strict=True):
        assert answer["file"] == Path(path).name
        if "error" in answer:
            assert answer["error"]["code"] in {"NOT_A_PDF", "MALFORMED_PDF", "ENCRYPTED_PDF"}
        else:
            assert all(s["indication"] in {"TOTAL-PASSED", "TOTAL-FAILED", "INDETERMINATE"}
                       for s in answer["signatures"])
