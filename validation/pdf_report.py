"""The validation report as a PDF a person can keep: what `FileReport` says, in words,
on A4 pages, then sealed by the validation service (a PAdES signature with the service's
own key, EN 319 142-1 B-B, or B-T when a time-stamping service is given), so that the
report itself validates and a changed byte shows.

Text is set with pyHanko's OpenType engine in DejaVu Sans (Debian's fonts-dejavu-core),
embedded as a subset, so that every signer's name prints as written (Łukasiewicz, Østergård);
when that font is missing, in the standard Helvetica (WinAnsi only: other letters become
'?')."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from asn1crypto import x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngine
from pyhanko.pdf_utils.font.basic import SimpleFontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from validation.qualification import ADESEAL_QC, QESEAL
from validation.report import (
    ADES,
    ADES_QC,
    INDETERMINATE,
    INDETERMINATE_PREFIX,
    NOT_ADES,
    QES,
    TOTAL_FAILED,
    TOTAL_PASSED,
    FileReport,
    SignatureReport,
)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
REGULAR, BOLD = FONT_DIR / "DejaVuSans.ttf", FONT_DIR / "DejaVuSans-Bold.ttf"
A4 = (595.0, 842.0)  # points (ISO 216)
MARGIN = 56.0
SEAL_FIELD = "ServiceSeal"
# fontTools names each table it cannot subset (FFTM, a FontForge timestamp) at WARNING.
logging.getLogger("fontTools.subset").setLevel(logging.ERROR)
log = logging.getLogger(__name__)

# EN 319 102-1 §5.1.3 indications and TS 119 172-4 qualifications, in words.
INDICATIONS = {
    TOTAL_PASSED: "Valid (TOTAL-PASSED)",
    TOTAL_FAILED: "Invalid (TOTAL-FAILED)",
    INDETERMINATE: "Not determined (INDETERMINATE)",
}
QUALIFICATIONS = {
    QES: "Qualified electronic signature (QES)",
    ADES_QC: "Advanced electronic signature with a qualified certificate (AdES/QC)",
    ADES: "Advanced electronic signature (AdES)",
    QESEAL: "Qualified electronic seal (QESeal)",
    ADESEAL_QC: "Advanced electronic seal with a qualified certificate (AdESeal/QC)",
    NOT_ADES: "Not an advanced electronic signature",
}
TIME_SOURCES = {"timestamp": "from a time-stamp", "claimed": "claimed by the signer",
                "none": "no time"}


@dataclass(frozen=True)
class ReportSeal:
    """The validation service's seal: a pyHanko signer (key and certificate chain); for
    B-T the RFC 3161 time-stamping service's URL; for B-LT (with a time-stamp) the roots
    its chain ends at, so that the seal's revocation data (OCSP/CRL from its AIA and
    CRL distribution points) goes into the report's DSS and it validates offline."""

    signer: signers.Signer
    timestamp_url: str | None = None
    name: str = "qsign validation service"
    trust_roots: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class _Style:
    size: float
    bold: bool = False
    gap: float = 0.0  # extra space above the line


TITLE, HEADING, BODY, SMALL = _Style(17, True), _Style(12, True, 10), _Style(10), \
    _Style(8.5)


def to_pdf(report: FileReport, seal: ReportSeal | None = None, *,
           now: dt.datetime | None = None) -> bytes:
    """The report as a PDF, sealed with `seal` when given. Blocking (pyHanko, and the
    time-stamp request): run it in a thread from an event loop."""
    when = now or dt.datetime.now(dt.UTC)
    document = _render(list(_lines(report, when, seal)))
    if seal is None:
        return document
    return asyncio.run(_seal(document, seal))


def qualification_words(value: str) -> str:
    """TS 119 172-4 §4.3's qualification in words ("Indeterminate X": not proven yet)."""
    if value.startswith(INDETERMINATE_PREFIX):
        inner = value[len(INDETERMINATE_PREFIX):]
        return f"Not proven yet: {QUALIFICATIONS.get(inner, inner)}"
    return QUALIFICATIONS.get(value, value)


def describe_signature(sig: SignatureReport) -> list[tuple[str, str]]:
    """(label, value) pairs a person reads, in order: indication, qualification, signer,
    time, coverage, level (and the reasons when it did not pass or is not qualified)."""
    rows = [("Result", INDICATIONS.get(sig.indication, sig.indication))]
    if sig.sub_indication:
        rows.append(("Reason", sig.sub_indication))
    rows.append(("Qualification", qualification_words(sig.qualification)))
    if sig.qualification != QES and sig.qualification_reason:
        rows.append(("Why not qualified", sig.qualification_reason))
    rows.append(("Signed by", sig.signer or "unknown"))
    if sig.signing_time is not None:
        at = sig.signing_time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        rows.append(("Signed at", f"{at} ({TIME_SOURCES.get(sig.time_source, sig.time_source)})"))
    else:
        rows.append(("Signed at", "no time known"))
    rows.append(("Covers", f"{sig.coverage}: {sig.coverage_detail}"))
    rows.append(("Level", f"PAdES {sig.level}"))
    return rows


def _lines(report: FileReport, when: dt.datetime, seal: ReportSeal | None
           ) -> Iterator[tuple[_Style, str]]:
    yield TITLE, "Signature validation report"
    yield SMALL, ("Validation of electronic signatures (ETSI EN 319 102-1) and of their "
                  "qualified status (ETSI TS 119 172-4, TS 119 615) from trusted lists "
                  "(ETSI TS 119 612).")
    yield BODY, f"File: {report.name}"
    yield BODY, f"SHA-256: {report.sha256}"
    yield BODY, f"Validated at: {when.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
    if not report.signatures:
        yield HEADING, "No signature"
        yield BODY, "This PDF carries no electronic signature."
    for number, sig in enumerate(report.signatures, start=1):
        yield HEADING, f"Signature {number} of {len(report.signatures)} (field {sig.field})"
        for label, value in describe_signature(sig):
            yield BODY, f"{label}: {value}"
    yield HEADING, "Trusted lists"
    if not report.trusted_lists:
        yield BODY, "None configured: no signature can be shown as qualified."
    for tl in report.trusted_lists:
        state = (f"used{': ' + tl.problem if tl.problem else ''}" if tl.ok
                 else f"NOT used: {tl.problem or 'unusable'}")
        yield BODY, f"{tl.territory or '--'}  {tl.source}  ({state})"
    if seal is not None:
        yield SMALL, (f"This report is sealed by {seal.name}: its electronic seal proves "
                      "that the report was issued by the service and has not been changed.")


# Layout ----------------------------------------------------------------------------------


class _ThousandthsGlyphs(GlyphAccumulator):
    """pyHanko's glyph accumulator in the PDF's glyph space of 1000 units per em (ISO
    32000-1 §9.2.4): pyHanko writes /W widths and TJ adjustments in the font's own units,
    right only for fonts of 1000 units per em (DejaVu has 2048), so HarfBuzz is scaled to
    1000 and each width converted."""

    def __init__(self, writer: PdfFileWriter, font: io.BytesIO, size: float) -> None:
        super().__init__(writer=writer, font_handle=font, font_size=size)
        self._font_units = self.units_per_em
        self.units_per_em = 1000
        self.hb_font.scale = (1000, 1000)

    def _get_cid_and_width(self, glyph_id: int) -> tuple[int, int]:
        if glyph_id not in self._glyphs:
            cid, width = super()._get_cid_and_width(glyph_id)
            self._glyphs[glyph_id] = (cid, round(width * 1000 / self._font_units))
        return self._glyphs[glyph_id]


class _Fonts:
    """One font engine per style (the engine positions glyphs for one size)."""

    def __init__(self, writer: PdfFileWriter) -> None:
        self._writer = writer
        self._engines: dict[_Style, tuple[str, FontEngine]] = {}
        self.unicode = REGULAR.exists() and BOLD.exists()

    def engine(self, style: _Style) -> tuple[str, FontEngine]:
        if style not in self._engines:
            engine: FontEngine
            if self.unicode:
                font = io.BytesIO((BOLD if style.bold else REGULAR).read_bytes())
                engine = _ThousandthsGlyphs(self._writer, font, style.size)
            else:  # Helvetica's average advance is about half an em
                engine = SimpleFontEngineFactory(
                    "Helvetica-Bold" if style.bold else "Helvetica", 0.55
                ).create_font_engine(self._writer)
            self._engines[style] = (f"F{len(self._engines) + 1}", engine)
        return self._engines[style]

    def resources(self) -> generic.DictionaryObject:
        return generic.DictionaryObject({pdf_name("/Font"): generic.DictionaryObject({  # type: ignore[no-untyped-call]
            pdf_name(f"/{name}"): engine.as_resource()
            for name, engine in self._engines.values()})})

    def text(self, style: _Style, value: str) -> str:
        return value if self.unicode else unicodedata.normalize("NFC", value).encode(
            "cp1252", errors="replace").decode("cp1252")


def _wrap(fonts: _Fonts, style: _Style, value: str, width: float) -> list[str]:
    _, engine = fonts.engine(style)
    lines: list[str] = []
    current = ""
    for word in value.split():
        candidate = f"{current} {word}" if current else word
        if current and engine.shape(candidate).x_advance * style.size > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


def _render(lines: list[tuple[_Style, str]]) -> bytes:
    writer = PdfFileWriter(stream_xrefs=False)  # type: ignore[no-untyped-call]
    fonts = _Fonts(writer)
    width = A4[0] - 2 * MARGIN
    pages: list[bytes] = []
    ops: list[bytes] = []
    y = A4[1] - MARGIN
    for style, value in lines:
        for piece in _wrap(fonts, style, fonts.text(style, value), width):
            leading = style.size * 1.35
            if y - leading - style.gap < MARGIN:
                pages.append(b"\n".join(ops))
                ops, y = [], A4[1] - MARGIN
            y -= leading + style.gap
            name, engine = fonts.engine(style)
            shaped = engine.shape(piece).graphics_ops
            ops.append(b"BT /%s %g Tf %g %g Td %s ET" % (
                name.encode(), style.size, MARGIN, y, shaped))
            style = _Style(style.size, style.bold)  # the gap only above the first line
    pages.append(b"\n".join(ops))
    footer_name, footer = fonts.engine(SMALL)  # every engine made before the resources
    resources = writer.add_object(fonts.resources())
    for number, content in enumerate(pages, start=1):
        footer_ops = footer.shape(f"Page {number} / {len(pages)}").graphics_ops
        stream = content + b"\nBT /%s %g Tf %g %g Td %s ET" % (
            footer_name.encode(), SMALL.size, MARGIN, MARGIN / 2, footer_ops)
        page = PageObject(contents=writer.add_object(generic.StreamObject(  # type: ignore[no-untyped-call]
            stream_data=stream)), media_box=(0, 0, *A4), resources=resources)
        writer.insert_page(page)  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


async def _seal(document: bytes, seal: ReportSeal) -> bytes:
    """B-LT when the seal has roots and a time-stamping service (EN 319 142-1 §6.3), else
    B-T or B-B; a B-LT whose revocation data cannot be fetched now is sealed B-T."""
    long_term = bool(seal.trust_roots) and seal.timestamp_url is not None
    if long_term:
        try:
            return await _sealed(document, seal, long_term=True)
        except (SigningError, PdfError, OSError, ValueError) as exc:
            log.warning("validation report sealed without revocation data: %s", exc)
    return await _sealed(document, seal, long_term=False)


async def _sealed(document: bytes, seal: ReportSeal, *, long_term: bool) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(document))
    async with aiohttp.ClientSession() as session:
        context = ValidationContext(
            trust_roots=list(seal.trust_roots), allow_fetching=True,
            fetcher_backend=AIOHttpFetcherBackend(session)) if long_term else None
        meta = signers.PdfSignatureMetadata(
            field_name=SEAL_FIELD, subfilter=fields.SigSeedSubFilter.PADES,
            reason="Validation report issued by the validation service", name=seal.name,
            embed_validation_info=long_term, validation_context=context)
        timestamper = None if seal.timestamp_url is None else HTTPTimeStamper(
            seal.timestamp_url, session=session)
        out = await signers.async_sign_pdf(
            writer, meta, signer=seal.signer, timestamper=timestamper,
            new_field_spec=fields.SigFieldSpec(SEAL_FIELD))
    return bytes(out.getvalue())
