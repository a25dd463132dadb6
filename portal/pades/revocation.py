"""Validation data for B-LT (EN 319 142-1 §5.4, the DSS): the signer's path validated to
a trust root with its OCSP responses and CRLs, reused across one request's documents."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import aiohttp
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp, x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from portal.pades.errors import CertificateRejected, TrustServiceError
from portal.pades.prepared import Revocation
from portal.pades.trust import Validation, http_session


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
    except (ValidationError, PathBuildingError) as exc:
        raise _refusal(exc) from exc
    finally:
        await backend.close()  # type: ignore[no-untyped-call]
    return Revocation(
        certificates=tuple(c.dump() for c in path),
        ocsp_responses=unique(o.dump() for o in context.ocsps),
        crls=unique(c.dump() for c in context.crls))


# The trust services' fault, not the certificate's.
_UNAVAILABLE = ("revocation-unavailable", "no revocation status could be obtained: {}")
# pyhanko-certvalidator's refusals (RFC 5280 §6.1), most specific first: code, message.
_REFUSALS: tuple[tuple[type[Exception], str, str], ...] = (
    (RevokedError, "revoked", "the certificate is revoked"),
    (ExpiredError, "expired", "the certificate has expired"),
    (NotYetValidError, "not-yet-valid", "the certificate is not yet valid"),
    (InsufficientRevinfoError, *_UNAVAILABLE),
    (PathBuildingError, "untrusted-issuer", "the certificate does not chain to a trust root"),
    (InvalidCertificateError, "no-non-repudiation", "the certificate cannot sign: {}"),
)


def _refusal(exc: Exception) -> CertificateRejected | TrustServiceError:
    """A path that did not validate, as the certificate's fault or the trust services'."""
    found = next(((code, message) for kind, code, message in _REFUSALS
                  if isinstance(exc, kind)), None)
    if found is None:  # e.g. hard-fail when neither OCSP nor CRL could be fetched
        found = _UNAVAILABLE if "revocation" in str(exc).lower() else (
            "invalid-path", "the certificate path is not valid: {}")
    code, message = found
    error = TrustServiceError if code == _UNAVAILABLE[0] else CertificateRejected
    return error(message.format(exc), code=code)


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
            async with http_session(session, validation) as http:
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
REVOCATIONS = _RevocationReuse(REVOCATION_REUSE_SECONDS)


def unique(items: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(dict.fromkeys(items))
