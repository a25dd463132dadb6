"""The deferred signing session's two calls: `prepare` reserves the signature and gives
the hash the token signs; `complete` checks the token's value and makes the signed PDF
(module portal.pades says how the two fit)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import Sequence

import aiohttp

from portal.pades.certificates import load_certificate, signer_certificates
from portal.pades.errors import PdfInvalid, ValidationConfigError
from portal.pades.pdf import Box, check_byte_range, embed, prepare_pdf, reserve
from portal.pades.prepared import Level, Prepared, Revocation
from portal.pades.revocation import REVOCATIONS
from portal.pades.signed_data import signed_container, verify_signature
from portal.pades.timestamp import document_timestamp, timestamp_revocation
from portal.pades.trust import Validation

MAX_PDF_BYTES = 32 * 1024 * 1024  # the API takes 20 MiB documents; earlier signers add some
MAX_TEXT = 256
_FIELD_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")


async def prepare(pdf: bytes, certificate: bytes, chain: Sequence[bytes], *, level: Level | str,
                  field_name: str, signer_name: str, reason: str | None = None,
                  location: str | None = None, validation: Validation,
                  session: aiohttp.ClientSession | None = None,
                  box: Box | None = None) -> Prepared:
    """Reserve a PAdES signature in `pdf` for the holder of `certificate` and compute the
    hash to sign. `chain`: the issuing CA certificates (DER), nearest first. `session`:
    the caller's HTTP client session for OCSP/CRL (B-LT), reused across documents;
    without one, a session is made for the call. `box`: a visible signature on that page
    (from 1) in that rectangle (points), else invisible.

    Raises PdfInvalid (the PDF), CertificateRejected (the certificate; for B-LT also
    its path: trust, validity, nonRepudiation, revocation), TrustServiceError
    (revocation services unreachable for B-LT), ValidationConfigError, ValueError
    (arguments)."""
    level = _level(level)
    if not isinstance(pdf, bytes | bytearray) or not pdf:
        raise PdfInvalid("the PDF is empty", code="malformed")
    if len(pdf) > MAX_PDF_BYTES:
        raise PdfInvalid(f"the PDF is larger than {MAX_PDF_BYTES // 2**20} MiB",
                         code="too-large")
    if not isinstance(field_name, str) or not _FIELD_NAME.fullmatch(field_name):
        raise ValueError("field_name: 1..64 of A-Z a-z 0-9 _ -")
    name = _text("signer_name", signer_name, required=True)
    assert name is not None
    reason = _text("reason", reason)
    location = _text("location", location)
    if not isinstance(validation, Validation):
        raise TypeError("validation must be a Validation")
    if level.timestamped and validation.timestamp_url is None:
        raise ValidationConfigError(f"PAdES {level} needs a timestamp_url")
    signer_cert, chain_certs = signer_certificates(certificate, chain)
    revocation = Revocation()
    if level.long_term:
        revocation = await REVOCATIONS.get(signer_cert, chain_certs, validation, session)
    reserved = reserve(signer_cert, chain_certs, level)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    output, byte_range, attributes = await asyncio.to_thread(
        prepare_pdf, bytes(pdf), signer_cert, chain_certs, field_name, name, reason,
        location, reserved, now, box)
    return Prepared(
        digest=hashlib.sha256(attributes).digest(), level=level, field_name=field_name,
        prepared_at=now, certificate=signer_cert.dump(),
        chain=tuple(c.dump() for c in chain_certs), signed_attributes=attributes,
        document_digest=byte_range.document_digest,
        reserved_start=byte_range.reserved_region_start,
        reserved_end=byte_range.reserved_region_end, pdf=output, revocation=revocation)


async def complete(prepared: Prepared, signature: bytes, *, validation: Validation,
                   session: aiohttp.ClientSession | None = None) -> bytes:
    """Embed the token's `signature` over `prepared.digest` and return the signed PDF.
    `session`: the caller's HTTP client session for the TSA, as for `prepare`.

    ECDSA values are DER (as the agent returns them; IEEE P1363 r||s is accepted too),
    RSA values PKCS#1 v1.5 (RFC 8017 §8.2). Raises SignatureInvalid before any other
    work when the value does not verify, PreparedInvalid when `prepared` is not
    self-consistent, TrustServiceError when the TSA fails or its certificate does not
    validate to a trust root (B-T, B-LT)."""
    if not isinstance(prepared, Prepared):
        raise TypeError("prepared must be a Prepared")
    if not isinstance(validation, Validation):
        raise TypeError("validation must be a Validation")
    if prepared.level.timestamped and validation.timestamp_url is None:
        raise ValidationConfigError(f"PAdES {prepared.level} needs a timestamp_url")
    prepared.check_consistent()
    certificate = load_certificate(prepared.certificate)
    value = verify_signature(certificate, prepared.signed_attributes, signature)
    await asyncio.to_thread(check_byte_range, prepared)
    chain = [load_certificate(c) for c in prepared.chain]
    container = await signed_container(prepared, certificate, chain, value, validation,
                                       session)
    tsa_revocation = Revocation()
    if prepared.level.timestamped:  # a timestamp from a TSA we do not trust is worthless
        tsa_revocation = await timestamp_revocation(container, chain, validation, session)
    signed = await asyncio.to_thread(embed, prepared, container, tsa_revocation)
    if prepared.level is Level.B_LTA:
        signed = await document_timestamp(signed, validation, session)
    return signed


def check_signature(prepared: Prepared, signature: bytes) -> None:
    """SignatureInvalid unless `signature` is the certificate's signature over the
    prepared digest: for checking every document of a request before completing any
    (all or nothing, API.md sign/complete). `complete` checks again."""
    verify_signature(load_certificate(prepared.certificate), prepared.signed_attributes,
                     signature)


def _level(level: Level | str) -> Level:
    try:
        return Level(level)
    except ValueError:
        raise ValueError(f"level must be one of {', '.join(v.value for v in Level)}") from None


def _text(what: str, value: str | None, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise ValueError(f"{what} is required")
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"{what}: a string of at most {MAX_TEXT} characters")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise ValueError(f"{what}: control characters are not allowed")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{what} is required")
    return value or None
