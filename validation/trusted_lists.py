"""Trusted lists (ETSI TS 119 612) as the validator uses them: read from files or URLs,
their XAdES signature checked against the scheme operator's certificates (a list whose
signature fails is not used, and says so), a list of trusted lists followed to the
lists it points at.

pyHanko verifies the signature and turns the *granted* periods of CA/QC and QTST
services into a TSPRegistry (its qualified-status input). What it lacks, and this module
adds: the services' full status history (withdrawn included), which gives the trust
anchors a validator needs whatever the status (TS 119 615 §4.1: qualification is judged
apart from the chain) and the reason a signature is not qualified; a per-list status for
the report; a list of trusted lists read from a file, not only from the EU's address."""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import x509
from pyhanko.keys import load_certs_from_pemder_data
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.qualified import eutl_parse
from pyhanko.sign.validation.qualified.tsp import CA_QC_URI, QTST_URI, TSPRegistry

from validation.errors import TrustedListConfigError
from validation.report import TrustedListStatus

# TS 119 612 §5.3.3 (TSLType) and §5.5.4 (service status) URIs.
LOTL_TYPE = "http://uri.etsi.org/TrstSvc/TrustedList/TSLType/EUlistofthelists"
STATUS_GRANTED = eutl_parse.STATUS_GRANTED
MAX_LIST_BYTES = 32 * 1024 * 1024  # the EU LOTL is ~0.5 MB, the largest national list ~10 MB
FETCH_TIMEOUT_S = 30.0
MAX_SIZE_DEFAULT = 64 * 1024 * 1024
REVOCATION_MAX_AGE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class StatusPeriod:
    status: str  # a TS 119 612 §5.5.4 status URI
    since: dt.datetime

    @property
    def name(self) -> str:
        return self.status.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ListedService:
    """A CA/QC or QTST service of a trusted list, with its whole status history
    (current status and ServiceHistory, TS 119 612 §5.5 and §5.6), oldest first."""

    name: str
    service_type: str
    certificates: tuple[x509.Certificate, ...]
    history: tuple[StatusPeriod, ...]
    territory: str | None
    source: str = ""  # the trusted list that names it

    def status_at(self, moment: dt.datetime) -> StatusPeriod | None:
        current = None
        for period in self.history:
            if period.since <= moment:
                current = period
        return current

    def identifies(self, certificate: x509.Certificate) -> bool:
        """The service's digital identity is this certificate or its key and name
        (TS 119 612 §5.5.3: a re-issued CA certificate keeps the service)."""
        return any(c.sha256 == certificate.sha256
                   or (c.public_key.dump() == certificate.public_key.dump()
                       and c.subject == certificate.subject) for c in self.certificates)


@dataclass(frozen=True)
class ValidationSettings:
    """What every validation of this process is judged by: built once from trusted-list
    sources, reused across files (and threads: nothing in it changes)."""

    registry: TSPRegistry
    services: tuple[ListedService, ...]
    trusted_lists: tuple[TrustedListStatus, ...]
    # Revocation data and certificates fetched online (AIA, OCSP, CRL) besides what
    # the file carries (its DSS). Off by default: a file's URLs are the signer's choice.
    online: bool = False
    max_size: int = MAX_SIZE_DEFAULT
    # EN 319 102-1 §5.2.5.4's maximum accepted age of revocation data, measured back from
    # the signature timestamp: a signing service gathers it before the signer signs.
    revocation_max_age: dt.timedelta = REVOCATION_MAX_AGE
    # A list past its NextUpdate (TS 119 612 §5.3.15) is flagged in every report; used
    # when True (its operator failed to publish, the content may be outdated), else not.
    use_expired_lists: bool = True
    # (source, signed XML) of each list used: a registry without the expired ones is
    # rebuilt from them (pyHanko's TSPRegistry cannot drop entries).
    signed_lists: tuple[tuple[str, str], ...] = ()
    # Registries without some expired lists, by the lists dropped: rebuilt once, not per
    # validation (a national list takes seconds to parse).
    _without: dict[frozenset[str], TSPRegistry] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        seen: dict[bytes, x509.Certificate] = {}
        for service in self.services:
            for cert in service.certificates:
                seen.setdefault(cert.sha256, cert)
        return tuple(seen.values())

    def as_of(self, moment: dt.datetime) -> ValidationSettings:
        """These settings at the validation time: every list past its NextUpdate then
        says so in its `problem`, and is dropped (with the lists it points at) unless
        `use_expired_lists`."""
        statuses: list[TrustedListStatus] = []
        dropped: set[str] = set()
        for status in self.trusted_lists:
            if status.via in dropped:
                dropped.add(status.source)
                statuses.append(dataclasses.replace(status, ok=False, problem=(
                    "the list of trusted lists that points at it is expired, not used")))
                continue
            if not status.ok or status.next_update is None or status.next_update >= moment:
                statuses.append(status)
                continue
            since = f"expired since {status.next_update.astimezone(dt.UTC):%Y-%m-%d %H:%M}Z"
            if self.use_expired_lists:
                statuses.append(dataclasses.replace(status, problem=(
                    f"{since} (its NextUpdate): used, its content may be outdated")))
            else:
                dropped.add(status.source)
                statuses.append(dataclasses.replace(status, ok=False, problem=(
                    f"{since} (its NextUpdate): not used")))
        if not dropped:
            return dataclasses.replace(self, trusted_lists=tuple(statuses))
        key = frozenset(dropped)
        registry = self._without.get(key)
        if registry is None:
            registry = TSPRegistry()
            for source, signed in self.signed_lists:
                if source not in dropped:
                    eutl_parse.trust_list_to_registry_unsafe(signed, registry)
            self._without[key] = registry
        return dataclasses.replace(
            self, registry=registry, trusted_lists=tuple(statuses),
            services=tuple(s for s in self.services if s.source not in dropped),
            signed_lists=tuple(x for x in self.signed_lists if x[0] not in dropped))

    @classmethod
    def load(cls, sources: Sequence[str], *, operator_certs: Sequence[bytes | str | Path] = (),
             fetch: bool = True, online: bool = False, max_size: int = MAX_SIZE_DEFAULT,
             use_expired_lists: bool = True) -> ValidationSettings:
        """Read each source (a path, a file: or an http(s) URL; URLs only when `fetch`),
        check its signature against `operator_certs` (PEM/DER bytes or files; for a list
        of trusted lists, pyHanko's known EU LOTL signers when none is given), follow a
        list of trusted lists to its lists with the certificates it names for them."""
        certs = _read_certificates(operator_certs)
        registry = TSPRegistry()
        services: list[ListedService] = []
        statuses: list[TrustedListStatus] = []
        signed: list[tuple[str, str]] = []
        for source in sources:
            statuses.extend(_load_source(source, certs, fetch, Loaded(registry, services,
                                                                       signed)))
        return cls(registry, tuple(services), tuple(statuses), online, max_size,
                   use_expired_lists=use_expired_lists, signed_lists=tuple(signed))

    @classmethod
    def empty(cls) -> ValidationSettings:
        """No trusted list: every chain ends NO_CERTIFICATE_CHAIN_FOUND."""
        return cls(TSPRegistry(), (), ())

    def services_for(self, certificate: x509.Certificate) -> list[ListedService]:
        return [s for s in self.services if s.identifies(certificate)]


@dataclass(frozen=True)
class Loaded:
    """What loading the lists accumulates: pyHanko's registry, the services with their
    history, the signed XML of each list used."""

    registry: TSPRegistry
    services: list[ListedService]
    signed: list[tuple[str, str]]


def _read_certificates(items: Iterable[bytes | str | Path]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for item in items:
        data = item if isinstance(item, bytes) else Path(item).read_bytes()
        try:
            certs.extend(load_certs_from_pemder_data(data))
        except (ValueError, TypeError) as exc:
            raise TrustedListConfigError(f"{item!r:.80}: not a certificate ({exc})") from exc
    return certs


def _read(source: str, fetch: bool) -> str:
    """A list's text; raises OSError (or ValueError) on a source it cannot read."""
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        if not fetch:
            raise ValueError("fetching is off (fetch=False)")
        request = urllib.request.Request(source, headers={  # noqa: S310
            "Accept": f"{eutl_parse.ETSI_TSL_MIME_TYPE}, text/xml"})
        # http(s) only: the scheme was checked above.
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310
            data: bytes = response.read(MAX_LIST_BYTES + 1)
    elif scheme == "file":
        data = Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)).read_bytes()
    elif scheme:
        raise ValueError(f"unsupported scheme {scheme!r}")
    else:
        data = Path(source).read_bytes()
    if len(data) > MAX_LIST_BYTES:
        raise ValueError(f"larger than {MAX_LIST_BYTES} bytes")
    return data.decode("utf-8")


def _load_source(source: str, certs: list[x509.Certificate], fetch: bool, loaded: Loaded
                 ) -> list[TrustedListStatus]:
    try:
        xml = _read(source, fetch)
        unverified = eutl_parse._raw_tl_parse(xml)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return [TrustedListStatus(source, None, False, f"cannot be read: {exc}")]
    except Exception as exc:  # xsdata raises its own tree of parse errors
        return [TrustedListStatus(source, None, False, f"not a trusted list: {exc}")]
    info = unverified.scheme_information
    if info is None:  # TS 119 612 §5.3: every list has one
        return [TrustedListStatus(source, None, False, "not a trusted list: no SchemeInformation")]
    if info.tsltype is not None and info.tsltype.value == LOTL_TYPE:
        return _load_lotl(source, xml, certs, fetch, loaded)
    return [_load_list(source, xml, certs, loaded)]


def _load_lotl(source: str, xml: str, certs: list[x509.Certificate], fetch: bool,
               loaded: Loaded) -> list[TrustedListStatus]:
    """A list of trusted lists (TS 119 612 §5.3.13 pointers): its signature checked,
    then each list it points at, checked with the certificates the pointer names."""
    territory = _territory(eutl_parse._raw_tl_parse(xml))
    try:
        lotl = eutl_parse.validate_and_parse_lotl(xml, certs or None)
    except SignatureValidationError as exc:
        return [TrustedListStatus(source, territory, False,
                                  f"signature not valid, list not used: {exc.failure_message}")]
    out = [TrustedListStatus(source, territory, True, None,
                             _next_update(eutl_parse._raw_tl_parse(xml)))]
    for ref in lotl.references:
        if eutl_parse.LOTL_RULE in ref.scheme_rules:
            continue  # the pointer to the LOTL itself
        try:
            tl_xml = _read(ref.location_uri, fetch)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            out.append(TrustedListStatus(ref.location_uri, ref.territory, False,
                                         f"cannot be read: {exc}", via=source))
            continue
        out.append(dataclasses.replace(_load_list(
            ref.location_uri, tl_xml, ref.tlso_certs, loaded, territory=ref.territory),
            via=source))
    return out


def _load_list(source: str, xml: str, certs: list[x509.Certificate], loaded: Loaded,
               territory: str | None = None) -> TrustedListStatus:
    if not certs:
        return TrustedListStatus(source, territory, False,
                                 "no scheme operator certificate to check its signature "
                                 "with, list not used")
    try:
        # What the signature covers: everything below is read from the signed XML only.
        signed = eutl_parse._validate_and_extract_tl_data_multiple_certs(xml, certs, None)
        eutl_parse.trust_list_to_registry_unsafe(signed, loaded.registry)
        parsed = eutl_parse._raw_tl_parse(signed)
    except SignatureValidationError as exc:
        return TrustedListStatus(source, territory, False,
                                 f"signature not valid, list not used: {exc.failure_message}")
    except Exception as exc:  # xsdata's and pyHanko's parse errors
        return TrustedListStatus(source, territory, False, f"not a trusted list: {exc}")
    territory = _territory(parsed) or territory
    loaded.services.extend(_services(parsed, territory, source))
    loaded.signed.append((source, signed))
    return TrustedListStatus(source, territory, True, None, _next_update(parsed))


def _next_update(parsed: Any) -> dt.datetime | None:
    """TS 119 612 §5.3.15 NextUpdate (absent for a list whose scheme has ended)."""
    info = parsed.scheme_information
    when = info.next_update.date_time if info and info.next_update else None
    return when.to_datetime() if when is not None else None


def _territory(parsed: Any) -> str | None:
    info = parsed.scheme_information
    if info is None or info.scheme_territory is None:
        return None
    return str(info.scheme_territory.value) or None


def _services(parsed: Any, territory: str | None, source: str) -> Iterable[ListedService]:
    providers = getattr(parsed, "trust_service_provider_list", None)
    for provider in (providers.trust_service_provider if providers else ()):
        for service in (provider.tspservices.tspservice if provider.tspservices else ()):
            info = service.service_information
            if info is None or info.service_type_identifier is None:
                continue
            if info.service_type_identifier.value not in (CA_QC_URI, QTST_URI):
                continue
            periods = [info]
            if service.service_history is not None:
                periods.extend(service.service_history.service_history_instance)
            history = sorted(
                (StatusPeriod(p.service_status.value, p.status_starting_time.to_datetime())
                 for p in periods if p.service_status is not None
                 and p.status_starting_time is not None), key=lambda p: p.since)
            certs = tuple(eutl_parse._as_certs(info.service_digital_identity)
                          ) if info.service_digital_identity else ()
            yield ListedService(eutl_parse._service_name_from_intl_string(info.service_name),
                                info.service_type_identifier.value, certs, tuple(history),
                                territory, source)
