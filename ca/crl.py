"""The issuing CA's CRL (RFC 5280 §5): a full v2 CertificateList, numbered, signed
through `CaKey` (the issuing key may live in an HSM).

Schedule: `current()` returns the cached CRL until either
- the registry's status version moved *and* the list of revoked certificates
  differs from the one on the cached CRL (issuing a certificate moves the version
  but changes no CRL), or
- half of the cached CRL's validity (thisUpdate..nextUpdate) has passed, so a
  relying party never holds a CRL that is about to expire.
Each new CRL takes the next number from the registry (RFC 5280 §5.2.3), so numbers
increase across restarts and across processes sharing one registry.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asn1crypto import crl, x509

from ca.authority import Authority
from ca.keys import signing_choice
from ca.profiles import key_identifier
from ca.registry import CertificateRecord, Registry

# What a CRL entry says about one certificate: serial, revocation date, reason.
_Revocation = tuple[int, dt.datetime, str]


@dataclass(frozen=True)
class IssuedCrl:
    """One CRL as published: its DER and the fields an HTTP layer needs for caching."""

    der: bytes
    number: int
    this_update: dt.datetime
    next_update: dt.datetime


@dataclass
class _Cached:
    crl: IssuedCrl
    version: int
    revocations: tuple[_Revocation, ...]
    fresh_until: dt.datetime


class CrlPublisher:
    """Publishes the issuing CA's CRL, regenerated on change and on a schedule."""

    def __init__(self, authority: Authority, registry: Registry, *,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self._registry = registry
        self._clock = clock or authority.now
        self._validity = dt.timedelta(hours=authority.config.crl_validity_hours)
        self._key = authority.keys["issuing"]
        self._hash, self._algorithm = signing_choice(self._key)
        self._issuer = authority.issuing
        self._lock = threading.Lock()  # one CRL generated at a time
        self._cached: _Cached | None = None

    def current(self) -> bytes:
        """The DER CRL to publish now; a new one only when the schedule asks for it."""
        return self.current_crl().der

    def refresh(self) -> bytes:
        """A new CRL now, whatever the schedule says."""
        return self.refresh_crl().der

    def current_crl(self) -> IssuedCrl:
        with self._lock:
            version = self._registry.status_version()
            cached = self._cached
            if cached is not None and self._clock() < cached.fresh_until:
                if cached.version == version:
                    return cached.crl
                revocations = _revocations(self._registry.revoked())
                if revocations == cached.revocations:  # e.g. an issuance: same list
                    cached.version = version
                    return cached.crl
                return self._generate(version, revocations)
            return self._generate(version, _revocations(self._registry.revoked()))

    def refresh_crl(self) -> IssuedCrl:
        with self._lock:
            version = self._registry.status_version()
            return self._generate(version, _revocations(self._registry.revoked()))

    def _generate(self, version: int, revocations: tuple[_Revocation, ...]) -> IssuedCrl:
        this_update = self._clock().astimezone(dt.UTC).replace(microsecond=0)
        next_update = this_update + self._validity
        number = self._registry.next_crl_number()
        der = self._build(number, this_update, next_update, revocations)
        issued = IssuedCrl(der, number, this_update, next_update)
        self._cached = _Cached(issued, version, revocations, this_update + self._validity / 2)
        return issued

    def _build(self, number: int, this_update: dt.datetime, next_update: dt.datetime,
               revocations: tuple[_Revocation, ...]) -> bytes:
        """RFC 5280 §5.1 (CertificateList v2), §5.2.1 AKI, §5.2.3 CRL number,
        §5.3.1 reason code."""
        algorithm = {"algorithm": self._algorithm}
        tbs: dict[str, Any] = {
            "version": "v2",
            "signature": algorithm,
            "issuer": self._issuer.subject,
            "this_update": _time(this_update),
            "next_update": _time(next_update),
            "crl_extensions": [
                {"extn_id": "authority_key_identifier", "critical": False,
                 "extn_value": {"key_identifier": key_identifier(self._issuer.public_key)}},
                {"extn_id": "crl_number", "critical": False, "extn_value": number},
            ],
        }
        if revocations:  # absent, not empty, when nothing is revoked (RFC 5280 §5.1.2.6)
            tbs["revoked_certificates"] = [_entry(r) for r in revocations]
        tbs_cert_list = crl.TbsCertList(tbs)
        signature = self._key.sign(tbs_cert_list.dump(), self._hash)
        return bytes(crl.CertificateList({
            "tbs_cert_list": tbs_cert_list,
            "signature_algorithm": algorithm,
            "signature": signature,
        }).dump())


def _revocations(records: list[CertificateRecord]) -> tuple[_Revocation, ...]:
    return tuple(sorted(
        (r.serial, r.revoked_at, r.reason or "unspecified")
        for r in records if r.revoked_at is not None))


def _entry(revocation: _Revocation) -> dict[str, Any]:
    serial, revoked_at, reason = revocation
    entry: dict[str, Any] = {"user_certificate": serial, "revocation_date": _time(revoked_at)}
    if reason != "unspecified":  # 'unspecified' SHOULD be absent (RFC 5280 §5.3.1)
        entry["crl_entry_extensions"] = [
            {"extn_id": "crl_reason", "critical": False, "extn_value": reason}]
    return entry


def _time(when: dt.datetime) -> x509.Time:
    """UTCTime through 2049, GeneralizedTime after (RFC 5280 §5.1.2.4)."""
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    if 1950 <= when.year < 2050:
        return x509.Time({"utc_time": when})
    return x509.Time({"general_time": when})
