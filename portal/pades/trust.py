"""Where trust and revocation come from for B-T and B-LT (`Validation`), and the HTTP
client session the TSA, OCSP and CRL requests share."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp
from asn1crypto import x509

from portal.pades.certificates import load_certificate
from portal.pades.errors import ValidationConfigError


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
                parsed.append(load_certificate(der))
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


@contextlib.asynccontextmanager
async def http_session(session: aiohttp.ClientSession | None, validation: Validation, *,
                   needed: bool = True) -> AsyncIterator[aiohttp.ClientSession | None]:
    """The caller's session, or one for this call. Ours, not pyHanko's lazy default:
    that one builds a fresh TLS context (loading the CA bundle) per session."""
    if session is not None or not needed:
        yield session
        return
    timeout = aiohttp.ClientTimeout(total=validation.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as own:
        yield own
