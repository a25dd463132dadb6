"""The signature-time-stamp of B-T and up (EN 319 142-1 §5.3): room for it in
/Contents, and the TSA's own path and revocation data, so the token validates offline;
and B-LTA's document time-stamp over the signed PDF with its DSS (§5.5, §6.4)."""

from __future__ import annotations

from io import BytesIO

import aiohttp
from asn1crypto import cms, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import timestamps
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper

from portal.pades.errors import CertificateRejected, TrustServiceError
from portal.pades.prepared import HASH, Revocation
from portal.pades.revocation import REVOCATIONS
from portal.pades.trust import Validation, http_session

# Room for the signature-time-stamp token in /Contents (DER bytes; doubled as hex). A
# token holds the TSTInfo, the TSA's signature and usually its certificate(s).
TIMESTAMP_RESERVE = 8 * 1024


async def timestamp_revocation(container: cms.ContentInfo, chain: list[x509.Certificate],
                                validation: Validation,
                                session: aiohttp.ClientSession | None) -> Revocation:
    """The TSA's path and revocation data, so the signature-time-stamp validates offline
    as well (EN 319 142-1 §5.4.2: the DSS covers the timestamp's certificates too)."""
    certificates = timestamp_certificates(container)
    tsa = next((c for c in certificates if "time_stamping"
                in (c.extended_key_usage_value.native if c.extended_key_usage_value else ())),
               None)
    if tsa is None:
        raise TrustServiceError("the timestamp token does not carry the TSA's certificate",
                                code="timestamp-untrusted")
    others = [c for c in certificates if c is not tsa] + chain
    try:
        return await REVOCATIONS.get(tsa, others, validation, session, tsa=True)
    except CertificateRejected as exc:
        raise TrustServiceError(f"the TSA's certificate is not trusted: {exc}",
                                code="timestamp-untrusted") from exc


def timestamp_certificates(container: cms.ContentInfo) -> list[x509.Certificate]:
    """The certificates inside the signature-time-stamp token (the TSA's and its CAs'),
    for the DSS: the token's own path must validate offline too."""
    found: list[x509.Certificate] = []
    for signer_info in container["content"]["signer_infos"]:
        for attribute in signer_info["unsigned_attrs"] or ():
            if attribute["type"].native != "signature_time_stamp_token":
                continue
            for token in attribute["values"]:
                for choice in token["content"]["certificates"] or ():
                    if choice.name == "certificate":
                        found.append(choice.chosen)
    return found


async def document_timestamp(pdf: bytes, validation: Validation,
                             session: aiohttp.ClientSession | None) -> bytes:
    """`pdf` (signed, its DSS written) with a document time-stamp in a new revision: a
    /DocTimeStamp signature, subfilter ETSI.RFC3161 (EN 319 142-1 §5.5, ISO 32000-2
    §12.8.5), from the configured TSA (pyHanko's PdfTimeStamper)."""
    try:
        async with http_session(session, validation) as http:
            timestamper = timestamps.HTTPTimeStamper(validation.timestamp_url,
                                                     timeout=validation.timeout, session=http)
            writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
            if writer.security_handler is not None:  # owner password only, as prepared
                writer.encrypt("")  # type: ignore[no-untyped-call]
            output = await PdfTimeStamper(timestamper).async_timestamp_pdf(writer, HASH)
    except timestamps.TimestampRequestError as exc:
        raise TrustServiceError(f"the timestamp service failed: {exc}",
                                code="timestamp-unavailable") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise TrustServiceError(f"the timestamp service is unreachable: {exc}",
                                code="timestamp-unavailable") from exc
    data: bytes = output.getvalue()
    return data
