"""The PDF work, blocking (run in a worker thread): the incremental update with a
reserved /Contents and its byte-range digest, owner-password-only encryption, and the
signed container and the DSS written into the reserved PDF (pyHanko's interrupted
signing: `PdfSigner.async_digest_doc_for_signing`, `PreparedByteRangeDigest.fill_with_cms`,
`DocumentSecurityStore`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from io import BytesIO

from asn1crypto import cms, ocsp, x509
from asn1crypto import crl as asn1_crl
from pyhanko.pdf_utils.crypt.api import AuthStatus
from pyhanko.pdf_utils.crypt.permissions import StandardPermissions
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.validation import DocumentSecurityStore
from pyhanko_certvalidator.registry import SimpleCertificateStore

from portal.pades.certificates import unique_certs
from portal.pades.errors import PadesError, PdfInvalid, PreparedInvalid, TrustServiceError
from portal.pades.prepared import HASH, Level, Prepared, Revocation
from portal.pades.revocation import unique
from portal.pades.signed_data import signature_size, signed_attributes
from portal.pades.timestamp import TIMESTAMP_RESERVE, timestamp_certificates

log = logging.getLogger(__name__)

Box = tuple[int, tuple[float, float, float, float]]  # a page (from 1) and x1, y1, x2, y2


def reserve(certificate: x509.Certificate, chain: list[x509.Certificate], level: Level) -> int:
    """Bytes of hex to reserve for /Contents: the container with every certificate,
    the signed attributes and the signature value, plus the timestamp token."""
    size = (len(certificate.dump()) + sum(len(c.dump()) for c in chain)
            + signature_size(certificate) + 1024)
    if level.timestamped:
        size += TIMESTAMP_RESERVE
    return 2 * size


def prepare_pdf(pdf: bytes, certificate: x509.Certificate, chain: list[x509.Certificate],
                 field_name: str, name: str, reason: str | None, location: str | None,
                 reserved: int, now: dt.datetime, box: Box | None = None
                 ) -> tuple[bytes, PreparedByteRangeDigest, bytes]:
    """`box`: a visible signature (page from 1, rectangle in points) in a new field;
    without one, the field `field_name` (an existing one is filled) is invisible."""
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except Exception as exc:  # untrusted input: any parser failure is a bad PDF
        log.info("PDF refused: %s: %s", type(exc).__name__, exc)
        raise PdfInvalid("the file is not a readable PDF", code="malformed") from exc
    if writer.prev.encrypted:
        _open_encrypted(writer)
    placeholder = signers.ExternalSigner(
        certificate, SimpleCertificateStore.from_certs(chain),  # type: ignore[no-untyped-call]
        signature_value=bytes(signature_size(certificate)))
    spec = None
    if box is not None:
        page, rect = box
        pages = int(writer.root["/Pages"]["/Count"])
        if not 1 <= page <= pages:
            raise PdfInvalid(f"the signature's page {page} is not in this {pages}-page PDF",
                             code="no-such-page")
        # ISO 32000-1 §12.7.4.5: a signature field's widget; pyHanko draws its stamp.
        spec = fields.SigFieldSpec(sig_field_name=field_name, on_page=page - 1,
                                   box=tuple(round(v) for v in rect))  # type: ignore[arg-type]
    pdf_signer = signers.PdfSigner(
        signers.PdfSignatureMetadata(
            field_name=field_name, md_algorithm=HASH, name=name, reason=reason,
            location=location, subfilter=fields.SigSeedSubFilter.PADES),
        signer=placeholder, new_field_spec=spec)

    async def run() -> tuple[bytes, PreparedByteRangeDigest, bytes]:
        byte_range, _, output = await pdf_signer.async_digest_doc_for_signing(
            writer, bytes_reserved=reserved)
        assert isinstance(output, BytesIO)  # no `output=` given: pyHanko made a BytesIO
        attributes = signed_attributes(byte_range.document_digest, certificate)
        return output.getvalue(), byte_range, attributes

    try:
        return asyncio.run(run())
    except SigningError as exc:
        text = str(exc)
        code = ("field-in-use" if "filled already" in text
                else "locked" if "forbids all changes" in text else "not-signable")
        raise PdfInvalid(f"the PDF cannot take this signature: {text}", code=code) from exc
    except PadesError:
        raise
    except Exception as exc:  # untrusted input, as above
        log.info("PDF refused while preparing: %s: %s", type(exc).__name__, exc)
        raise PdfInvalid("the PDF is malformed", code="malformed") from exc


def _open_encrypted(writer: IncrementalPdfFileWriter) -> None:
    """A PDF encrypted with an owner password only (the empty user password, ISO 32000-1
    §7.6.3.1) opens for anyone and can be signed if its permissions allow form filling
    (bit 9 or 6) and it has no ISO/TS 32004 MAC; the signature revision is then
    encrypted like the rest. A PDF that needs a user password cannot be read here."""
    try:
        result = writer.encrypt("")  # type: ignore[no-untyped-call]
    except Exception as exc:  # an unsupported or broken security handler
        raise PdfInvalid(f"the PDF's encryption is not supported ({type(exc).__name__})",
                         code="encrypted") from exc
    if result.status == AuthStatus.FAILED:
        raise PdfInvalid("the PDF is protected by a password; remove it first",
                         code="encrypted")
    handler = writer.security_handler
    if handler is not None and handler.pdf_mac_enabled:
        # ISO/TS 32004: each signature then carries a MAC made with the file key over
        # the signature value, which deferred signing does not carry over to complete().
        raise PdfInvalid("PDFs encrypted with an integrity MAC (ISO/TS 32004) cannot be "
                         "signed here; remove the encryption first", code="encrypted")
    allowed = result.permission_flags
    if allowed is not None and not (allowed & (StandardPermissions.ALLOW_FORM_FILLING
                                               | StandardPermissions.ALLOW_ANNOTS_FORM_FILLING)):
        raise PdfInvalid("the PDF's permissions forbid filling in signature fields",
                         code="locked")


def check_byte_range(prepared: Prepared) -> None:
    pdf = prepared.pdf
    digest = hashlib.sha256()
    digest.update(memoryview(pdf)[:prepared.reserved_start])
    digest.update(memoryview(pdf)[prepared.reserved_end:])
    if digest.digest() != prepared.document_digest:
        raise PreparedInvalid("the document digest does not match the prepared PDF")
    contents = pdf[prepared.reserved_start:prepared.reserved_end]
    if not (contents.startswith(b"<") and contents.endswith(b">")
            and contents.strip(b"<>0") == b""):
        raise PreparedInvalid("the reserved /Contents is not an empty placeholder")


def embed(prepared: Prepared, container: cms.ContentInfo,
           tsa_revocation: Revocation) -> bytes:
    der = container.dump()
    room = (prepared.reserved_end - prepared.reserved_start - 2) // 2
    if len(der) > room:
        raise TrustServiceError(f"the signature container ({len(der)} bytes) exceeds the "
                                f"reserved {room} bytes", code="container-too-large")
    output = BytesIO(prepared.pdf)
    byte_range = PreparedByteRangeDigest(prepared.document_digest, prepared.reserved_start,
                                         prepared.reserved_end)
    byte_range.fill_with_cms(output, der)
    if prepared.level.long_term:
        revocation = prepared.revocation
        certificates = [x509.Certificate.load(c) for c in revocation.certificates
                        + tsa_revocation.certificates]
        certificates += timestamp_certificates(container)
        ocsps = unique(revocation.ocsp_responses + tsa_revocation.ocsp_responses)
        crls = unique(revocation.crls + tsa_revocation.crls)
        # DocumentSecurityStore.add_dss, with the empty user password for PDFs encrypted
        # with an owner password only (prepare refused any other).
        writer = IncrementalPdfFileWriter(output, strict=False)
        if writer.security_handler is not None:
            writer.encrypt("")  # type: ignore[no-untyped-call]
        DocumentSecurityStore.supply_dss_in_writer(
            writer, None, certs=unique_certs(certificates),
            ocsps=[ocsp.OCSPResponse.load(o) for o in ocsps],
            crls=[asn1_crl.CertificateList.load(c) for c in crls])
        writer.write_in_place()  # type: ignore[no-untyped-call]
    return output.getvalue()
