"""The PDF validation report (validation/pdf_report.py) read back by PDFium, the renderer
Chromium uses: every line's text as written, names with letters outside Latin-1 among
them, and every glyph inside the page's margins (pyHanko's glyph accumulator wrote the
widths of a 2048-units-per-em font as if in thousandths of an em: each line then ran
about twice its length, off the page); and the portal's `[validation]` table."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from portal.config import ConfigError, PortalConfig
from validation.pdf_report import A4, MARGIN, describe_signature, to_pdf
from validation.report import FileReport, SignatureReport, TrustedListStatus

NAME = "Łukasz Østergård-Šimić"


def _report(signatures: int) -> FileReport:
    signed = dt.datetime(2026, 12, 4, 9, 30, tzinfo=dt.UTC)
    one = SignatureReport(
        "Signature1", "TOTAL-PASSED", None, "QES", None, NAME, signed, "timestamp",
        "ENTIRE_REVISION", "the signature covers its revision; later revisions add "
        "validation data and timestamps only", "B-LT")
    other = SignatureReport(
        "Signature2", "TOTAL-FAILED", "HASH_FAILURE", "AdES",
        "the issuer's service was withdrawn before the signing time (ETSI TS 119 615)",
        "Bob Durand", None, "none", "PARTIAL", "a later revision changed the page", "B-B")
    return FileReport("contrat.pdf", "ab" * 32, (one, other) * signatures,
                      (TrustedListStatus("/etc/qsign/tl.xml", "FR", True),))


def test_every_line_reads_back_and_stays_within_the_margins() -> None:
    data = to_pdf(_report(8))  # 16 signatures: several pages
    pdf = pdfium.PdfDocument(data)
    try:
        assert len(pdf) >= 2
        text = ""
        for page in pdf:
            textpage = page.get_textpage()
            text += textpage.get_text_range()
            for index in range(textpage.count_chars()):
                left, _, right, _ = textpage.get_charbox(index)
                assert left >= MARGIN - 1 and right <= A4[0] - MARGIN + 1, (
                    index, left, right)
    finally:
        pdf.close()
    assert NAME in text
    assert "Qualified electronic signature (QES)" in text
    assert "Reason: HASH_FAILURE" in text
    assert "Why not qualified: the issuer's service was withdrawn" in text
    assert "2026-12-04 09:30:00 UTC (from a time-stamp)" in text
    assert "Signature 16 of 16" in text


def test_a_file_without_signatures_says_so() -> None:
    pdf = pdfium.PdfDocument(to_pdf(FileReport("plain.pdf", "00" * 32, (), ())))
    try:
        text = pdf[0].get_textpage().get_text_range()
    finally:
        pdf.close()
    assert "No signature" in text and "None configured" in text


def test_the_validation_table_is_read_and_checked() -> None:
    config = PortalConfig.from_mapping({"validation": {
        "trusted_lists": ["/etc/tl.xml", "https://example.test/lotl.xml"],
        "operator_certs": ["/etc/op.pem"], "per_address_per_hour": 5}})
    assert config.validation.trusted_lists == ("/etc/tl.xml", "https://example.test/lotl.xml")
    assert config.validation.per_address_per_hour == 5
    assert str(config.validation.operator_certs[0]) == "/etc/op.pem"
    with pytest.raises(ConfigError, match=r"validation\.trusted_list: unknown key"):
        PortalConfig.from_mapping({"validation": {"trusted_list": []}})
    with pytest.raises(ConfigError, match=r"validation\.per_address_per_hour"):
        PortalConfig.from_mapping({"validation": {"per_address_per_hour": 0}})


def test_qualifications_in_words() -> None:
    base = _report(1).signatures[0]
    for value, words in (("QESeal", "Qualified electronic seal (QESeal)"),
                         ("Indeterminate QES",
                          "Not proven yet: Qualified electronic signature (QES)")):
        rows = dict(describe_signature(dataclasses.replace(
            base, qualification=value, qualification_reason="no POE yet")))
        assert rows["Qualification"] == words
        assert rows["Why not qualified"] == "no POE yet"
