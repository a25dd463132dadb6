"""Deferred PAdES signing for the signature service: the portal never holds the key.

    prepare()   a PDF and the signer's certificate -> `Prepared`: the PDF with a reserved,
                zero-filled /Contents (an incremental update, so earlier signatures stay
                valid), the CMS signed attributes, and `digest`, the SHA-256 over their
                DER: the one hash the signer's token signs (through the agent, in the page).
    complete()  the token's signature value -> the signed PDF. The value is checked
                against the certificate first; then it is wrapped in CMS, timestamped for
                B-T (the signature-time-stamp of EN 319 142-1 §5.3), and for B-LT the
                certificates and OCSP responses / CRLs go into the DSS (§5.4), so the
                signature validates offline.

`Prepared` carries all state between the two calls as bytes (`to_bytes`/`from_bytes`),
so the portal can store it and finish in another process. The PDF and CMS work is
pyHanko's "interrupted signing" (docs, lib-guide/signing: `ExternalSigner`,
`PdfSigner.async_digest_doc_for_signing`, `PreparedByteRangeDigest.fill_with_cms`,
`DocumentSecurityStore.add_dss`).

One module per concern: signing.py (the two calls), prepared.py (the state between
them), signed_data.py (CMS signed attributes, the value's check, the container),
timestamp.py (the signature-time-stamp), revocation.py (B-LT validation data),
pdf.py (the PDF work), certificates.py, trust.py (`Validation`), errors.py.
"""

from portal.pades.certificates import MAX_CERTIFICATE_BYTES, MAX_CHAIN
from portal.pades.errors import (
    CertificateRejected,
    PadesError,
    PdfInvalid,
    PreparedInvalid,
    SignatureInvalid,
    TrustServiceError,
    ValidationConfigError,
)
from portal.pades.prepared import HASH, Level, Prepared, Revocation
from portal.pades.revocation import REVOCATION_REUSE_SECONDS, REVOCATIONS, collect_revocation
from portal.pades.signed_data import signed_attributes, verify_signature
from portal.pades.signing import MAX_PDF_BYTES, MAX_TEXT, check_signature, complete, prepare
from portal.pades.timestamp import TIMESTAMP_RESERVE
from portal.pades.trust import Validation

__all__ = [
    "HASH", "MAX_CERTIFICATE_BYTES", "MAX_CHAIN", "MAX_PDF_BYTES", "MAX_TEXT",
    "REVOCATIONS", "REVOCATION_REUSE_SECONDS", "TIMESTAMP_RESERVE", "CertificateRejected",
    "Level", "PadesError", "PdfInvalid", "Prepared", "PreparedInvalid", "Revocation",
    "SignatureInvalid", "TrustServiceError", "Validation", "ValidationConfigError",
    "check_signature", "collect_revocation", "complete", "prepare", "signed_attributes",
    "verify_signature",
]
