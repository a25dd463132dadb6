"""The issuers of a signer's certificate, for the CSC `credentials/info` chain (CSC API
v1.0.4 §11.5, v2.0 §11.5): what the token holds beyond the certificate, completed from
the agent's configured CA through each certificate's AIA caIssuers (RFC 5280 §4.2.2.1).

Only the configured CA is asked (SECURITY #32): a caIssuers URL is fetched only when it
lies at the origin of `ca_url` (same scheme, host and port), without redirects, with the
TLS certificate verified and the answer bounded. A certificate counts as an issuer only
when its key verifies the certificate below it. Fetched issuers are kept in the state
directory (DIR/issuers/), so the chain stays whole while the CA is unreachable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID

from ground.files import write_atomically

log = logging.getLogger(__name__)

CACHE_DIR = "issuers"
MAX_ISSUER_BYTES = 64 * 1024  # a CA certificate, or a small certs-only PKCS#7
MAX_ISSUERS = 5  # certificates above the signer's, at most
FETCH_SECONDS = 10
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL without credentials; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


class IssuerChain:
    """Completes signer certificates' chains; one per agent (its CA and state)."""

    def __init__(self, ca_url: str | None, state_dir: Path) -> None:
        self._ca = origin(ca_url) if ca_url else None
        self._directory = state_dir / CACHE_DIR

    async def complete(self, certificate: bytes, held: Sequence[bytes] = ()) -> list[bytes]:
        """`certificate` (DER) first, then its issuers up to a self-signed one or as far
        as they are found: among `held` (the token's), in the cache, at the CA."""
        path = [certificate]
        try:
            current = x509.load_der_x509_certificate(certificate)
        except ValueError:
            return path
        pool = list(_parsed(held))
        for _ in range(MAX_ISSUERS):
            if current.issuer == current.subject:
                break
            issuer = (issued_by(current, pool) or self._cached(current)
                      or await self._fetch(current))
            if issuer is None:
                break
            der = issuer.public_bytes(Encoding.DER)
            if der in path:
                break  # a loop of cross-certificates: stop where we are
            path.append(der)
            current = issuer
        return path

    def _cache_file(self, cert: x509.Certificate) -> Path:
        return self._directory / f"{hashlib.sha256(cert.issuer.public_bytes()).hexdigest()}.der"

    def _cached(self, cert: x509.Certificate) -> x509.Certificate | None:
        try:
            data = self._cache_file(cert).read_bytes()
        except OSError:
            return None
        return issued_by(cert, _parsed([data]))

    async def _fetch(self, cert: x509.Certificate) -> x509.Certificate | None:
        if self._ca is None:
            return None
        for url in ca_issuers(cert):
            if origin(url) != self._ca:
                log.info("caIssuers %s is not at the configured CA: not fetched", url)
                continue
            data = await _get(url)
            issuer = None if data is None else issued_by(cert, _candidates(data))
            if issuer is not None:
                self._directory.mkdir(mode=0o700, exist_ok=True)
                write_atomically(self._cache_file(cert), issuer.public_bytes(Encoding.DER))
                return issuer
        return None


def ca_issuers(cert: x509.Certificate) -> list[str]:
    """The caIssuers URLs in `cert`'s Authority Information Access (RFC 5280 §4.2.2.1)."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [d.access_location.value for d in access
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def issued_by(cert: x509.Certificate, candidates: Iterable[x509.Certificate]
              ) -> x509.Certificate | None:
    """The candidate named as `cert`'s issuer whose key verifies `cert`'s signature."""
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None


def _parsed(ders: Iterable[bytes]) -> Iterable[x509.Certificate]:
    for der in ders:
        try:
            yield x509.load_der_x509_certificate(der)
        except ValueError:
            continue  # unreadable: it certifies nothing


def _candidates(data: bytes) -> list[x509.Certificate]:
    """A DER or PEM certificate, or a certs-only PKCS#7 (RFC 5280 §4.2.2.1's .p7c)."""
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    try:
        return [x509.load_pem_x509_certificate(data)]
    except ValueError:
        pass
    try:
        return pkcs7.load_der_pkcs7_certificates(data)
    except ValueError:
        return []


async def _get(url: str) -> bytes | None:
    timeout = aiohttp.ClientTimeout(total=FETCH_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                url, allow_redirects=False) as answer:
            if answer.status != 200:
                log.warning("caIssuers %s: HTTP %d", url, answer.status)
                return None
            data = await answer.content.read(MAX_ISSUER_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("caIssuers %s: %s", url, type(exc).__name__)
        return None
    return data if len(data) <= MAX_ISSUER_BYTES else None
