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
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from io import BytesIO
from typing import Any

import aiohttp
from asn1crypto import cms, core, ocsp, x509
from asn1crypto import crl as asn1_crl
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from pyhanko.pdf_utils.crypt.api import AuthStatus
from pyhanko.pdf_utils.crypt.permissions import StandardPermissions
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.validation import DocumentSecurityStore
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.registry import SimpleCertificateStore

log = logging.getLogger(__name__)

MAX_PDF_BYTES = 32 * 1024 * 1024  # the API takes 20 MiB documents; earlier signers add some
MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_CHAIN = 8
MAX_TEXT = 256
HASH = "sha256"  # the portal's contract: one SHA-256 per document (API.md, sign/prepare)
# Room for the signature-time-stamp token in /Contents (DER bytes; doubled as hex). A
# token holds the TSTInfo, the TSA's signature and usually its certificate(s).
TIMESTAMP_RESERVE = 8 * 1024
_FIELD_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_FORMAT = b"QSIGN-PADES-PREPARED\n"
_FORMAT_VERSION = 1


class Level(StrEnum):
    """PAdES baseline levels (ETSI EN 319 142-1 §6)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B


# Errors ---------------------------------------------------------------------------------


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


# Configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """How to reach trust and revocation for B-T and B-LT. OCSP responses and CRLs are
    fetched from the certificate's AIA / CRL distribution points over HTTP."""

    trust_roots: Sequence[bytes]
    timestamp_url: str | None = None
    timeout: float = 10.0  # seconds, per request to the TSA, OCSP or CRL services
    _roots: tuple[x509.Certificate, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        roots = tuple(self.trust_roots)
        if not roots:
            raise ValidationConfigError("at least one trust root is needed")
        parsed = []
        for index, der in enumerate(roots):
            try:
                parsed.append(_load_certificate(der))
            except ValueError as exc:
                raise ValidationConfigError(f"trust_roots[{index}]: {exc}") from exc
        url = self.timestamp_url
        if url is not None and not re.fullmatch(r"https?://[^\s]+", url):
            raise ValidationConfigError("timestamp_url must be an http(s) URL")
        if not 0 < self.timeout <= 120:
            raise ValidationConfigError("timeout must be within (0, 120] seconds")
        object.__setattr__(self, "trust_roots", roots)
        object.__setattr__(self, "_roots", tuple(parsed))

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        return self._roots


# The prepared state ------------------------------------------------------------------------


@dataclass(frozen=True)
class Revocation:
    """What B-LT embeds in the DSS for the signer's certificate path."""

    certificates: tuple[bytes, ...] = ()
    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """Everything `complete` needs, in another process if need be."""

    digest: bytes  # SHA-256 over `signed_attributes`: what the token signs
    level: Level
    field_name: str
    prepared_at: dt.datetime
    certificate: bytes
    chain: tuple[bytes, ...]
    signed_attributes: bytes  # DER SET OF Attribute (RFC 5652 §5.4)
    document_digest: bytes  # SHA-256 over the /ByteRange of `pdf`
    reserved_start: int  # the /Contents hex string, delimiters included, not hashed
    reserved_end: int
    pdf: bytes = field(repr=False)  # with /Contents zero-filled
    revocation: Revocation = Revocation()

    @property
    def hash_algorithm(self) -> str:
        return "SHA256"

    def to_bytes(self) -> bytes:
        """A stable serialisation: a format line, a JSON header (sorted keys, base64
        values), then the PDF itself, so a 20 MiB document is not base64-inflated."""
        header = {
            "version": _FORMAT_VERSION,
            "digest": _b64(self.digest),
            "level": self.level.value,
            "field_name": self.field_name,
            "prepared_at": self.prepared_at.isoformat(),
            "certificate": _b64(self.certificate),
            "chain": [_b64(c) for c in self.chain],
            "signed_attributes": _b64(self.signed_attributes),
            "document_digest": _b64(self.document_digest),
            "reserved": [self.reserved_start, self.reserved_end],
            "pdf_sha256": hashlib.sha256(self.pdf).hexdigest(),
            "pdf_length": len(self.pdf),
            "revocation": {
                "certificates": [_b64(c) for c in self.revocation.certificates],
                "ocsp_responses": [_b64(o) for o in self.revocation.ocsp_responses],
                "crls": [_b64(c) for c in self.revocation.crls],
            },
        }
        encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return _FORMAT + len(encoded).to_bytes(4, "big") + encoded + self.pdf

    @classmethod
    def from_bytes(cls, data: bytes) -> Prepared:
        """The inverse of `to_bytes`; PreparedInvalid for anything else, including
        parts that do not agree (hash of the PDF, digest of the attributes, reserved
        region, messageDigest)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PreparedInvalid("prepared data must be bytes")
        data = bytes(data)
        if not data.startswith(_FORMAT) or len(data) < len(_FORMAT) + 4:
            raise PreparedInvalid("not a prepared PAdES signature")
        offset = len(_FORMAT)
        size = int.from_bytes(data[offset:offset + 4], "big")
        offset += 4
        if size > 1024 * 1024 or offset + size > len(data):
            raise PreparedInvalid("the header is truncated")
        try:
            header = json.loads(data[offset:offset + size])
            pdf = data[offset + size:]
            if header["version"] != _FORMAT_VERSION:
                raise PreparedInvalid(f"format version {header['version']} is not supported")
            if (len(pdf) != header["pdf_length"]
                    or hashlib.sha256(pdf).hexdigest() != header["pdf_sha256"]):
                raise PreparedInvalid("the PDF does not match its recorded hash")
            start, end = header["reserved"]
            revocation = header["revocation"]
            prepared = cls(
                digest=_unb64(header["digest"]), level=Level(header["level"]),
                field_name=_str(header["field_name"]),
                prepared_at=dt.datetime.fromisoformat(header["prepared_at"]),
                certificate=_unb64(header["certificate"]),
                chain=tuple(_unb64(c) for c in header["chain"]),
                signed_attributes=_unb64(header["signed_attributes"]),
                document_digest=_unb64(header["document_digest"]),
                reserved_start=_int(start), reserved_end=_int(end), pdf=pdf,
                revocation=Revocation(
                    certificates=tuple(_unb64(c) for c in revocation["certificates"]),
                    ocsp_responses=tuple(_unb64(o) for o in revocation["ocsp_responses"]),
                    crls=tuple(_unb64(c) for c in revocation["crls"])))
        except PreparedInvalid:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PreparedInvalid(f"malformed prepared signature: {type(exc).__name__}"
                                  ) from exc
        prepared.check_consistent()
        return prepared

    def check_consistent(self) -> None:
        """The parts agree: the digest is over the attributes, the attributes'
        messageDigest is the document digest and their signingCertificateV2 the
        certificate, the reserved region lies in the PDF."""
        if hashlib.sha256(self.signed_attributes).digest() != self.digest:
            raise PreparedInvalid("digest is not the hash of the signed attributes")
        if not 0 < self.reserved_start < self.reserved_end <= len(self.pdf):
            raise PreparedInvalid("the reserved region is outside the PDF")
        try:
            attributes = cms.CMSAttributes.load(self.signed_attributes, strict=True)
            values = {a["type"].native: a["values"][0] for a in attributes}
            found = values["message_digest"].native
            cert_ids = values["signing_certificate_v2"]["certs"]
            cert_hash = cert_ids[0]["cert_hash"].native
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise PreparedInvalid("the signed attributes are not ours") from exc
        if found != self.document_digest:
            raise PreparedInvalid("messageDigest is not the document digest")
        if cert_hash != hashlib.sha256(self.certificate).digest():
            raise PreparedInvalid("signingCertificateV2 names another certificate")


# Entry points -----------------------------------------------------------------------------


async def prepare(pdf: bytes, certificate: bytes, chain: Sequence[bytes], *, level: Level | str,
                  field_name: str, signer_name: str, reason: str | None = None,
                  location: str | None = None, validation: Validation,
                  session: aiohttp.ClientSession | None = None) -> Prepared:
    """Reserve a PAdES signature in `pdf` for the holder of `certificate` and compute the
    hash to sign. `chain`: the issuing CA certificates (DER), nearest first. `session`:
    the caller's HTTP client session for OCSP/CRL (B-LT), reused across documents;
    without one, a session is made for the call.

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
    signer_cert, chain_certs = _signer_certificates(certificate, chain)
    revocation = Revocation()
    if level is Level.B_LT:
        revocation = await _REVOCATIONS.get(signer_cert, chain_certs, validation, session)
    reserved = _reserve(signer_cert, chain_certs, level)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    output, byte_range, attributes = await asyncio.to_thread(
        _prepare_pdf, bytes(pdf), signer_cert, chain_certs, field_name, name, reason,
        location, reserved, now)
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
    certificate = _load_certificate(prepared.certificate)
    value = verify_signature(certificate, prepared.signed_attributes, signature)
    await asyncio.to_thread(_check_byte_range, prepared)
    chain = [_load_certificate(c) for c in prepared.chain]
    signer = signers.ExternalSigner(
        certificate, SimpleCertificateStore.from_certs(chain),  # type: ignore[no-untyped-call]
        signature_value=value)
    attributes = cms.CMSAttributes.load(prepared.signed_attributes)
    try:
        async with _session(session, validation, needed=prepared.level.timestamped) as http:
            timestamper = (timestamps.HTTPTimeStamper(validation.timestamp_url,
                                                      timeout=validation.timeout,
                                                      session=http)
                           if prepared.level.timestamped else None)
            container = await signer.async_sign_prescribed_attributes(
                HASH, attributes, timestamper=timestamper)
    except timestamps.TimestampRequestError as exc:
        raise TrustServiceError(f"the timestamp service failed: {exc}",
                                code="timestamp-unavailable") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise TrustServiceError(f"the timestamp service is unreachable: {exc}",
                                code="timestamp-unavailable") from exc
    tsa_revocation = Revocation()
    if prepared.level.timestamped:  # a timestamp from a TSA we do not trust is worthless
        tsa_revocation = await _timestamp_revocation(container, chain, validation, session)
    return await asyncio.to_thread(_embed, prepared, container, tsa_revocation)


async def _timestamp_revocation(container: cms.ContentInfo, chain: list[x509.Certificate],
                                validation: Validation,
                                session: aiohttp.ClientSession | None) -> Revocation:
    """The TSA's path and revocation data, so the signature-time-stamp validates offline
    as well (EN 319 142-1 §5.4.2: the DSS covers the timestamp's certificates too)."""
    certificates = _timestamp_certificates(container)
    tsa = next((c for c in certificates if "time_stamping"
                in (c.extended_key_usage_value.native if c.extended_key_usage_value else ())),
               None)
    if tsa is None:
        raise TrustServiceError("the timestamp token does not carry the TSA's certificate",
                                code="timestamp-untrusted")
    others = [c for c in certificates if c is not tsa] + chain
    try:
        return await _REVOCATIONS.get(tsa, others, validation, session, tsa=True)
    except CertificateRejected as exc:
        raise TrustServiceError(f"the TSA's certificate is not trusted: {exc}",
                                code="timestamp-untrusted") from exc


def check_signature(prepared: Prepared, signature: bytes) -> None:
    """SignatureInvalid unless `signature` is the certificate's signature over the
    prepared digest: for checking every document of a request before completing any
    (all or nothing, API.md sign/complete). `complete` checks again."""
    verify_signature(_load_certificate(prepared.certificate), prepared.signed_attributes,
                     signature)


def verify_signature(certificate: x509.Certificate, signed_attributes: bytes,
                     signature: bytes) -> bytes:
    """Check `signature` over `signed_attributes` (SHA-256) with the certificate's key;
    return the value as CMS carries it (ECDSA: DER, RFC 5753 §2.1.1)."""
    if not isinstance(signature, bytes | bytearray) or not signature:
        raise SignatureInvalid("the signature is empty")
    signature = bytes(signature)
    try:
        public_key = serialization.load_der_public_key(certificate.public_key.dump())
    except ValueError as exc:
        raise CertificateRejected("the certificate's key is not usable",
                                  code="unsupported-key") from exc
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            value = _ecdsa_der(signature, public_key.curve.key_size)
            public_key.verify(value, signed_attributes, ec.ECDSA(hashes.SHA256()))
            return value
        if isinstance(public_key, rsa.RSAPublicKey):
            if len(signature) != (public_key.key_size + 7) // 8:
                raise SignatureInvalid("the RSA signature is not the modulus' length")
            public_key.verify(signature, signed_attributes, padding.PKCS1v15(),
                              hashes.SHA256())
            return signature
    except InvalidSignature as exc:
        raise SignatureInvalid("the signature does not verify with the certificate's key"
                               ) from exc
    raise CertificateRejected("only ECDSA and RSA keys are supported", code="unsupported-key")


async def collect_revocation(certificate: x509.Certificate, chain: Sequence[x509.Certificate],
                             validation: Validation, *,
                             session: aiohttp.ClientSession | None = None,
                             key_usage: frozenset[str] = frozenset({"non_repudiation"}),
                             extended_key_usage: frozenset[str] | None = None) -> Revocation:
    """Validate a path to a trust root at this moment (RFC 5280 §6; the signer's needs
    keyUsage nonRepudiation, a TSA's timeStamping), fetching OCSP responses and CRLs from
    the certificates' AIA and CRL distribution points; return what the DSS needs
    (EN 319 142-1 §5.4.2)."""
    # Backends close only sessions they made themselves.
    backend = AIOHttpFetcherBackend(session=session, per_request_timeout=validation.timeout)
    context = ValidationContext(
        trust_roots=list(validation.roots), other_certs=list(chain), allow_fetching=True,
        revocation_mode="hard-fail", fetcher_backend=backend)
    validator = CertificateValidator(certificate, intermediate_certs=list(chain),
                                     validation_context=context)
    try:
        path = await validator.async_validate_usage(  # type: ignore[no-untyped-call]
            set(key_usage), set(extended_key_usage) if extended_key_usage else None)
    except RevokedError as exc:
        raise CertificateRejected("the certificate is revoked", code="revoked") from exc
    except ExpiredError as exc:
        raise CertificateRejected("the certificate has expired", code="expired") from exc
    except NotYetValidError as exc:
        raise CertificateRejected("the certificate is not yet valid",
                                  code="not-yet-valid") from exc
    except InsufficientRevinfoError as exc:
        raise TrustServiceError(f"no revocation status could be obtained: {exc}",
                                code="revocation-unavailable") from exc
    except PathBuildingError as exc:
        raise CertificateRejected("the certificate does not chain to a trust root",
                                  code="untrusted-issuer") from exc
    except InvalidCertificateError as exc:
        raise CertificateRejected(f"the certificate cannot sign: {exc}",
                                  code="no-non-repudiation") from exc
    except (PathValidationError, ValidationError) as exc:
        # e.g. hard-fail when neither OCSP nor CRL could be fetched
        if "revocation" in str(exc).lower():
            raise TrustServiceError(f"no revocation status could be obtained: {exc}",
                                    code="revocation-unavailable") from exc
        raise CertificateRejected(f"the certificate path is not valid: {exc}",
                                  code="invalid-path") from exc
    finally:
        await backend.close()  # type: ignore[no-untyped-call]
    return Revocation(
        certificates=tuple(c.dump() for c in path),
        ocsp_responses=_unique(o.dump() for o in context.ocsps),
        crls=_unique(c.dump() for c in context.crls))


class _RevocationReuse:
    """One signer's revocation data serves the documents of one request: it is reused
    for at most REVOCATION_REUSE_SECONDS and never past the nextUpdate of what it holds;
    concurrent requests for the same path on one event loop share one fetch."""

    def __init__(self, seconds: float, size: int = 256) -> None:
        self.seconds = seconds
        self._size = size
        self._done: OrderedDict[bytes, tuple[float, dt.datetime, Revocation]] = OrderedDict()
        self._pending: dict[tuple[int, bytes], asyncio.Future[Revocation]] = {}
        self._lock = threading.Lock()

    async def get(self, certificate: x509.Certificate, chain: list[x509.Certificate],
                  validation: Validation, session: aiohttp.ClientSession | None, *,
                  tsa: bool = False) -> Revocation:
        names = b"".join(hashlib.sha256(c.dump()).digest()
                         for c in (certificate, *chain, *validation.roots))
        key = hashlib.sha256((b"tsa:" if tsa else b"signer:") + names).digest()
        with self._lock:
            found = self._done.get(key)
            if found is not None:
                until, fresh_until, revocation = found
                if time.monotonic() < until and dt.datetime.now(dt.UTC) < fresh_until:
                    self._done.move_to_end(key)
                    return revocation
                del self._done[key]
            loop = asyncio.get_running_loop()
            pending_key = (id(loop), key)
            pending = self._pending.get(pending_key)
            if pending is None or pending.get_loop() is not loop:
                pending = None
                self._pending[pending_key] = loop.create_future()
        if pending is not None:
            return await asyncio.shield(pending)
        future = self._pending[pending_key]
        try:
            async with _session(session, validation) as http:
                if tsa:
                    revocation = await collect_revocation(
                        certificate, chain, validation, session=http,
                        key_usage=frozenset({"digital_signature"}),
                        extended_key_usage=frozenset({"time_stamping"}))
                else:
                    revocation = await collect_revocation(certificate, chain, validation,
                                                          session=http)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            with self._lock:
                self._pending.pop(pending_key, None)
        future.set_result(revocation)
        with self._lock:
            self._done[key] = (time.monotonic() + self.seconds, _fresh_until(revocation),
                               revocation)
            while len(self._done) > self._size:
                self._done.popitem(last=False)
        return revocation

    def clear(self) -> None:
        with self._lock:
            self._done.clear()


def _fresh_until(revocation: Revocation) -> dt.datetime:
    """The earliest nextUpdate among the OCSP responses and CRLs (their freshness)."""
    ends = [dt.datetime.max.replace(tzinfo=dt.UTC)]
    for der in revocation.ocsp_responses:
        response = ocsp.OCSPResponse.load(der)
        for single in response.basic_ocsp_response["tbs_response_data"]["responses"]:
            if single["next_update"].native is not None:
                ends.append(single["next_update"].native)
    for der in revocation.crls:
        next_update = asn1_crl.CertificateList.load(der)["tbs_cert_list"]["next_update"]
        if next_update.native is not None:
            ends.append(next_update.native)
    return min(ends)


REVOCATION_REUSE_SECONDS = 60.0
_REVOCATIONS = _RevocationReuse(REVOCATION_REUSE_SECONDS)


# PDF work (blocking: runs in a worker thread) ------------------------------------------------


def _prepare_pdf(pdf: bytes, certificate: x509.Certificate, chain: list[x509.Certificate],
                 field_name: str, name: str, reason: str | None, location: str | None,
                 reserved: int, now: dt.datetime
                 ) -> tuple[bytes, PreparedByteRangeDigest, bytes]:
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except Exception as exc:  # untrusted input: any parser failure is a bad PDF
        log.info("PDF refused: %s: %s", type(exc).__name__, exc)
        raise PdfInvalid("the file is not a readable PDF", code="malformed") from exc
    if writer.prev.encrypted:
        _open_encrypted(writer)
    placeholder = signers.ExternalSigner(
        certificate, SimpleCertificateStore.from_certs(chain),  # type: ignore[no-untyped-call]
        signature_value=bytes(_signature_size(certificate)))
    pdf_signer = signers.PdfSigner(
        signers.PdfSignatureMetadata(
            field_name=field_name, md_algorithm=HASH, name=name, reason=reason,
            location=location, subfilter=fields.SigSeedSubFilter.PADES),
        signer=placeholder)

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


def signed_attributes(document_digest: bytes, certificate: x509.Certificate) -> bytes:
    """The CMS signed attributes of a PAdES baseline signature, DER (EN 319 142-1 §5.2):
    contentType id-data, messageDigest, and signingCertificateV2 (RFC 5035 §3) naming
    the signer's certificate by its SHA-256 hash (hashAlgorithm left at its DEFAULT
    sha256, so absent in DER) and issuer and serial. No signingTime: the time is the /M
    of the signature dictionary. Encoded here directly: asn1crypto re-encoding the
    issuer name costs ~10 ms a document."""
    issuer = _tlv(0x30, _tlv(0xA4, certificate.issuer.dump()))  # GeneralNames: [4] Name
    issuer_serial = _tlv(0x30, issuer + _integer(certificate.serial_number))
    cert_id = _tlv(0x30, _tlv(0x04, hashlib.sha256(certificate.dump()).digest())
                   + issuer_serial)
    signing_certificate = _tlv(0x30, _tlv(0x30, cert_id))
    attributes = [
        _attribute(_CONTENT_TYPE, _oid(_ID_DATA)),
        _attribute(_MESSAGE_DIGEST, _tlv(0x04, document_digest)),
        _attribute(_SIGNING_CERTIFICATE_V2, signing_certificate),
    ]
    return _tlv(0x31, b"".join(sorted(attributes)))  # DER SET OF: sorted encodings


_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
_ID_DATA = "1.2.840.113549.1.7.1"


def _attribute(oid: str, value: bytes) -> bytes:
    return _tlv(0x30, _oid(oid) + _tlv(0x31, value))


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def _check_byte_range(prepared: Prepared) -> None:
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


def _embed(prepared: Prepared, container: cms.ContentInfo,
           tsa_revocation: Revocation = Revocation()) -> bytes:
    der = container.dump()
    room = (prepared.reserved_end - prepared.reserved_start - 2) // 2
    if len(der) > room:
        raise TrustServiceError(f"the signature container ({len(der)} bytes) exceeds the "
                                f"reserved {room} bytes", code="container-too-large")
    output = BytesIO(prepared.pdf)
    byte_range = PreparedByteRangeDigest(prepared.document_digest, prepared.reserved_start,
                                         prepared.reserved_end)
    byte_range.fill_with_cms(output, der)
    if prepared.level is Level.B_LT:
        revocation = prepared.revocation
        certificates = [x509.Certificate.load(c) for c in revocation.certificates
                        + tsa_revocation.certificates]
        certificates += _timestamp_certificates(container)
        ocsps = _unique(revocation.ocsp_responses + tsa_revocation.ocsp_responses)
        crls = _unique(revocation.crls + tsa_revocation.crls)
        # DocumentSecurityStore.add_dss, with the empty user password for PDFs encrypted
        # with an owner password only (prepare refused any other).
        writer = IncrementalPdfFileWriter(output, strict=False)
        if writer.security_handler is not None:
            writer.encrypt("")  # type: ignore[no-untyped-call]
        DocumentSecurityStore.supply_dss_in_writer(
            writer, None, certs=_unique_certs(certificates),
            ocsps=[ocsp.OCSPResponse.load(o) for o in ocsps],
            crls=[asn1_crl.CertificateList.load(c) for c in crls])
        writer.write_in_place()  # type: ignore[no-untyped-call]
    return output.getvalue()


def _timestamp_certificates(container: cms.ContentInfo) -> list[x509.Certificate]:
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


# Helpers ------------------------------------------------------------------------------------


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


@contextlib.asynccontextmanager
async def _session(session: aiohttp.ClientSession | None, validation: Validation, *,
                   needed: bool = True) -> AsyncIterator[aiohttp.ClientSession | None]:
    """The caller's session, or one for this call. Ours, not pyHanko's lazy default:
    that one builds a fresh TLS context (loading the CA bundle) per session."""
    if session is not None or not needed:
        yield session
        return
    timeout = aiohttp.ClientTimeout(total=validation.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as own:
        yield own


def _load_certificate(der: bytes) -> x509.Certificate:
    if not isinstance(der, bytes | bytearray) or not der:
        raise ValueError("a certificate must be non-empty DER bytes")
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise ValueError("the certificate is too large")
    return _parsed_certificate(bytes(der))


@functools.lru_cache(maxsize=128)
def _parsed_certificate(der: bytes) -> x509.Certificate:
    """Parsed once per distinct DER: a batch of documents shares one signer and chain.
    (The objects are only read, never changed.)"""
    try:
        cert = x509.Certificate.load(der, strict=True)
        _ = cert.native  # parse it all now: malformed parts fail here
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a DER X.509 certificate ({type(exc).__name__})") from exc
    return cert


def _signer_certificates(certificate: bytes, chain: Sequence[bytes]
                         ) -> tuple[x509.Certificate, list[x509.Certificate]]:
    try:
        signer_cert = _load_certificate(certificate)
    except ValueError as exc:
        raise CertificateRejected(f"certificate: {exc}", code="malformed") from exc
    if not isinstance(chain, Sequence) or isinstance(chain, bytes | str) or len(chain) > MAX_CHAIN:
        raise CertificateRejected(f"chain: a list of at most {MAX_CHAIN} certificates",
                                  code="malformed")
    chain_certs = []
    for index, der in enumerate(chain):
        try:
            chain_certs.append(_load_certificate(der))
        except ValueError as exc:
            raise CertificateRejected(f"chain[{index}]: {exc}", code="malformed") from exc
    key = signer_cert.public_key
    if key.algorithm == "ec":
        if key.curve[1] not in ("secp256r1", "secp384r1", "secp521r1"):
            raise CertificateRejected(f"EC curve {key.curve[1]} is not supported",
                                      code="unsupported-key")
    elif key.algorithm == "rsa":
        if key.bit_size < 2048:
            raise CertificateRejected("RSA keys below 2048 bits are not accepted",
                                      code="unsupported-key")
    else:
        raise CertificateRejected(f"{key.algorithm} keys are not supported",
                                  code="unsupported-key")
    return signer_cert, chain_certs


def _signature_size(certificate: x509.Certificate) -> int:
    """The largest DER signature value the key can produce (for the size reserve)."""
    key = certificate.public_key
    if key.algorithm == "rsa":
        return math.ceil(int(key.bit_size) / 8)
    coordinate = math.ceil(int(key.bit_size) / 8)
    return 2 * (coordinate + 3) + 3  # SEQUENCE { INTEGER r, INTEGER s }, each maybe 0x00-led


def _reserve(certificate: x509.Certificate, chain: list[x509.Certificate], level: Level) -> int:
    """Bytes of hex to reserve for /Contents: the container with every certificate,
    the signed attributes and the signature value, plus the timestamp token."""
    size = (len(certificate.dump()) + sum(len(c.dump()) for c in chain)
            + _signature_size(certificate) + 1024)
    if level.timestamped:
        size += TIMESTAMP_RESERVE
    return 2 * size


def _ecdsa_der(signature: bytes, curve_bits: int) -> bytes:
    """Canonical DER for an ECDSA value given as DER or as IEEE P1363 r||s."""
    coordinate = math.ceil(curve_bits / 8)
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        if len(signature) != 2 * coordinate:
            raise SignatureInvalid("not an ECDSA signature value (DER or r||s)") from None
        r = int.from_bytes(signature[:coordinate], "big")
        s = int.from_bytes(signature[coordinate:], "big")
    der = encode_dss_signature(r, s)
    if der != signature and len(signature) != 2 * coordinate:
        raise SignatureInvalid("the ECDSA signature is not in DER (X.690 §10)")
    return der


def _unique(items: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(dict.fromkeys(items))


def _unique_certs(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.dump(), cert)
    return list(seen.values())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(value, validate=True)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value
