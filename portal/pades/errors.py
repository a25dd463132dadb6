"""The errors of deferred PAdES signing; `code` is a short stable reason the portal maps
to its wire errors (portal/signing.py)."""

from __future__ import annotations


class PadesError(Exception):
    """Base of this module's errors; `code` is a short stable reason."""

    code = "pades-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PdfInvalid(PadesError):
    """The PDF cannot be signed: garbage ("malformed"), "too-large", protected by a user
    password ("encrypted"), "locked" (a certification signature or permissions forbid
    it), its signature field already signed ("field-in-use"), or "not-signable" (other
    form problems). `code` says which."""

    code = "malformed"


class CertificateRejected(PadesError):
    """The signer's certificate (or chain) cannot be used: malformed, unsupported key,
    untrusted, revoked, expired, or without nonRepudiation (B-LT checks the path)."""

    code = "malformed"


class SignatureInvalid(PadesError):
    """The signature value does not verify with the certificate over the signed
    attributes (or is not a well-formed value for the key)."""

    code = "signature-invalid"


class TrustServiceError(PadesError):
    """The TSA or the revocation services (OCSP/CRL) could not be reached or answered
    something unusable."""

    code = "unavailable"


class PreparedInvalid(PadesError):
    """`Prepared.from_bytes` got data that is not a prepared signature of this format, or
    a prepared signature whose parts do not agree with each other."""

    code = "prepared-invalid"


class ValidationConfigError(PadesError, ValueError):
    """`Validation` is not usable for the requested level."""

    code = "config"
