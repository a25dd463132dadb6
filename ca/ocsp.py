"""The OCSP responder (RFC 6960), signing as the CA's delegated responder.

Responses are built with asn1crypto and signed through `CaKey`, so the
responder key may live in an HSM. A request without a nonce gets a pre-produced
response (RFC 5019 §2.2) from a cache keyed by its CertIDs:

- an entry stays valid while `registry.status_version()` is unchanged;
- when the version moves, the entry is re-checked against the registry, serial
  by serial, and kept if none of its certificates changed status (issuing or
  revoking another certificate does not cost a new signature);
- an entry is re-signed once half of its validity (thisUpdate..nextUpdate) has
  passed, so a client always gets at least half of `ocsp_validity_minutes`.

A request with a nonce is always answered fresh (RFC 8954), never cached.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, core, ocsp, parser

from ca.authority import Authority
from ca.keys import signing_choice
from ca.profiles import key_identifier
from ca.registry import CertificateRecord, Registry, Status

log = logging.getLogger(__name__)

MAX_REQUEST_ENTRIES = 10
MAX_REQUEST_BYTES = 64 * 1024
MAX_CACHE_ENTRIES = 10_000
NONCE_MIN, NONCE_MAX = 1, 32  # RFC 8954 §2.1
# CertID hash algorithms a client may use (RFC 6960 §4.1.1; SHA-1 is what most send).
CERT_ID_HASHES = ("sha1", "sha256", "sha384", "sha512")
_UNDERSTOOD_REQUEST_EXTENSIONS = frozenset({"nonce", "acceptable_responses",
                                            "preferred_signature_algorithms"})


class MalformedOcspRequest(ValueError):
    """The bytes are not an OCSP request this responder can answer (RFC 6960 §2.3
    malformedRequest)."""


def _status_only(status: str) -> bytes:
    return bytes(ocsp.OCSPResponse({"response_status": status}).dump())


MALFORMED_REQUEST = _status_only("malformed_request")
INTERNAL_ERROR = _status_only("internal_error")
UNAUTHORIZED = _status_only("unauthorized")


def request_from_get_path(path_segment: str) -> bytes:
    """The DER OCSPRequest in an HTTP GET path: the URL encoding of its base64
    encoding (RFC 6960 Appendix A.1). Missing base64 padding is tolerated.
    Raises MalformedOcspRequest."""
    text = urllib.parse.unquote(path_segment).strip()
    text += "=" * (-len(text) % 4)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedOcspRequest("not base64") from exc
    if not der:
        raise MalformedOcspRequest("empty request")
    return der


@dataclass(frozen=True)
class _Entry:
    """One Request of the list: its CertID as sent, and what we understood of it."""

    cert_id: Any  # ocsp.CertId
    serial: int
    ours: bool  # issuerNameHash and issuerKeyHash are the issuing CA's


@dataclass(frozen=True)
class _ParsedRequest:
    entries: tuple[_Entry, ...]
    nonce: Any | None  # the request's nonce extension, echoed as sent

    @property
    def cache_key(self) -> tuple[bytes, ...]:
        return tuple(bytes(e.cert_id.dump()) for e in self.entries)


# What one CertID's answer depends on: ('good',), ('revoked', time, reason), ('unknown',).
_State = tuple[Any, ...]


@dataclass
class _Cached:
    version: int
    states: tuple[_State, ...]
    fresh_until: dt.datetime
    der: bytes


class OcspResponder:
    """Answers OCSP requests for certificates of the issuing CA (RFC 6960 §2, §4.2),
    signed by the delegated responder (`authority.keys["ocsp"]`, RFC 6960 §4.2.2.2)."""

    def __init__(self, authority: Authority, registry: Registry, *,
                 clock: Callable[[], dt.datetime] | None = None,
                 max_cache_entries: int = MAX_CACHE_ENTRIES) -> None:
        self._registry = registry
        self._clock = clock or authority.now
        self._validity = dt.timedelta(minutes=authority.config.ocsp_validity_minutes)
        self._key = authority.keys["ocsp"]
        self._hash, self._algorithm = signing_choice(self._key)
        self._responder_cert = authority.certificates["ocsp"]
        self._responder_id_der = bytes(ocsp.ResponderId(
            name="by_key", value=key_identifier(self._responder_cert.public_key)).dump())
        self._algorithm_der = bytes(algos.SignedDigestAlgorithm(
            {"algorithm": self._algorithm}).dump())
        self._certs_der = _explicit(0, bytes(ocsp.Certificates([self._responder_cert]).dump()))
        issuing = authority.issuing
        name_der = issuing.subject.dump()
        key_bits = issuing.public_key["public_key"].contents[1:]  # without unused-bits byte
        self._issuer_hashes = {
            name: (hashlib.new(name, name_der).digest(), hashlib.new(name, key_bits).digest())
            for name in CERT_ID_HASHES}
        # The CA's own service certificates (OCSP, TSA) are issued at init, outside the
        # registry; relying parties checking a timestamp's TSA certificate ask about it.
        # Superseded ones too: tokens made before a re-issue carry them.
        services = [cert for role, cert in authority.certificates.items()
                    if role not in ("root", "issuing")] + authority.superseded
        self._service_serials = frozenset(
            cert.serial_number for cert in services if cert.issuer == issuing.subject)
        self._cache: OrderedDict[tuple[bytes, ...], _Cached] = OrderedDict()
        self._max_cache_entries = max_cache_entries
        self._lock = threading.Lock()

    # Public -----------------------------------------------------------------------------

    def respond(self, request_der: bytes) -> bytes:
        """A DER OCSPResponse for a DER OCSPRequest (RFC 6960 §4.1, §4.2). Never raises:
        unparseable input gives malformedRequest, a request about no certificate of
        ours gives unauthorized, a failure here gives internalError."""
        try:
            request = _parse(request_der, self._issuer_hashes)
        except MalformedOcspRequest as exc:
            log.debug("malformed OCSP request: %s", exc)
            return MALFORMED_REQUEST
        if not any(entry.ours for entry in request.entries):
            return UNAUTHORIZED
        try:
            if request.nonce is not None:
                return self._sign(request, self._states(request), self._clock())[0]
            return self._cached_or_new(request)
        except Exception:
            log.exception("OCSP response failed")
            return INTERNAL_ERROR

    def respond_get(self, path_segment: str) -> bytes:
        """`respond` for the GET form (RFC 6960 Appendix A.1). Never raises."""
        try:
            request_der = request_from_get_path(path_segment)
        except MalformedOcspRequest:
            return MALFORMED_REQUEST
        return self.respond(request_der)

    def cache_size(self) -> int:
        with self._lock:
            return len(self._cache)

    # Cache ------------------------------------------------------------------------------

    def _cached_or_new(self, request: _ParsedRequest) -> bytes:
        key = request.cache_key
        version = self._registry.status_version()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        states = None
        if cached is not None and now < cached.fresh_until:
            if cached.version == version:
                return cached.der
            states = self._states(request)
            if states == cached.states:  # other certificates changed, not these
                cached.version = version
                return cached.der
        states = states or self._states(request)
        der, this_update = self._sign(request, states, now)
        entry = _Cached(version, states, this_update + self._validity / 2, der)
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_cache_entries:
                self._cache.popitem(last=False)
        return der

    # Status -----------------------------------------------------------------------------

    def _states(self, request: _ParsedRequest) -> tuple[_State, ...]:
        return tuple(self._state(entry) for entry in request.entries)

    def _state(self, entry: _Entry) -> _State:
        """RFC 6960 §2.2: 'unknown' for another issuer's CertID or a serial never issued."""
        if not entry.ours:
            return ("unknown",)
        if entry.serial in self._service_serials:
            return ("good",)
        if entry.serial < 0:
            return ("unknown",)
        record: CertificateRecord | None = self._registry.get(entry.serial)
        if record is None:
            return ("unknown",)
        if record.status is Status.REVOKED:
            return ("revoked", record.revoked_at, record.reason)
        return ("good",)

    # Building ---------------------------------------------------------------------------

    def _sign(self, request: _ParsedRequest, states: tuple[_State, ...],
              now: dt.datetime) -> tuple[bytes, dt.datetime]:
        """A signed BasicOCSPResponse inside a successful OCSPResponse (RFC 6960 §4.2.1)."""
        this_update = now.astimezone(dt.UTC).replace(microsecond=0)
        next_update = this_update + self._validity
        singles = [bytes(ocsp.SingleResponse({
            "cert_id": ocsp.CertId.load(entry.cert_id.dump()),  # echoed as the client sent it
            "cert_status": _cert_status(state),
            "this_update": this_update,
            "next_update": next_update,
        }).dump()) for entry, state in zip(request.entries, states, strict=True)]
        # The envelope is assembled from DER parts (asn1crypto's emitter): building it
        # as nested asn1crypto objects costs three times the signature itself.
        fields = [self._responder_id_der, bytes(core.GeneralizedTime(this_update).dump()),
                  _sequence(*singles)]  # ResponseData; version v1 is the DEFAULT: omitted
        if request.nonce is not None:
            fields.append(_explicit(1, _sequence(bytes(request.nonce.dump()))))
        tbs = _sequence(*fields)
        signature = self._key.sign(tbs, self._hash)
        basic = _sequence(tbs, self._algorithm_der,
                          bytes(core.OctetBitString(signature).dump()), self._certs_der)
        response = _sequence(_SUCCESSFUL, _explicit(0, _sequence(
            _BASIC_RESPONSE_TYPE, bytes(core.OctetString(basic).dump()))))
        return response, this_update


def _sequence(*parts: bytes) -> bytes:
    return bytes(parser.emit(0, 1, 16, b"".join(parts)))  # universal, constructed, SEQUENCE


def _explicit(tag: int, inner: bytes) -> bytes:
    return bytes(parser.emit(2, 1, tag, inner))  # context-specific, constructed


_SUCCESSFUL = bytes(ocsp.OCSPResponseStatus("successful").dump())
_BASIC_RESPONSE_TYPE = bytes(ocsp.ResponseType("basic_ocsp_response").dump())


def _cert_status(state: _State) -> ocsp.CertStatus:
    if state[0] == "revoked":
        _, revoked_at, reason = state
        info: dict[str, Any] = {"revocation_time": revoked_at.astimezone(dt.UTC)}
        if reason and reason != "unspecified":  # as on the CRL (RFC 5280 §5.3.1)
            info["revocation_reason"] = reason
        return ocsp.CertStatus(name="revoked", value=info)
    return ocsp.CertStatus(name=state[0], value=None)


def _parse(request_der: bytes,
           issuer_hashes: dict[str, tuple[bytes, bytes]]) -> _ParsedRequest:
    """Parse and check an OCSPRequest (RFC 6960 §4.1.1, RFC 8954 §2.1)."""
    if not isinstance(request_der, bytes | bytearray | memoryview):
        raise MalformedOcspRequest("not bytes")
    if len(request_der) > MAX_REQUEST_BYTES:
        raise MalformedOcspRequest("request too large")
    try:
        return _parse_unchecked(bytes(request_der), issuer_hashes)
    except MalformedOcspRequest:
        raise
    except Exception as exc:  # asn1crypto raises many types on hostile input
        raise MalformedOcspRequest(f"{type(exc).__name__}: {exc}") from exc


def _parse_unchecked(request_der: bytes,
                     issuer_hashes: dict[str, tuple[bytes, bytes]]) -> _ParsedRequest:
    request = ocsp.OCSPRequest.load(request_der, strict=True)
    _ = request.native  # parse every field now: a malformed request fails here
    tbs = request["tbs_request"]
    if tbs["version"].native != "v1":
        raise MalformedOcspRequest("unsupported version")
    request_list = tbs["request_list"]
    if not 1 <= len(request_list) <= MAX_REQUEST_ENTRIES:
        raise MalformedOcspRequest(f"{len(request_list)} entries "
                                   f"(1 to {MAX_REQUEST_ENTRIES} accepted)")
    entries = []
    for item in request_list:
        for extension in item["single_request_extensions"]:
            if extension["critical"].native:
                raise MalformedOcspRequest("critical single request extension")
        cert_id = item["req_cert"]
        hashes = issuer_hashes.get(cert_id["hash_algorithm"]["algorithm"].native)
        ours = hashes is not None and hashes == (cert_id["issuer_name_hash"].native,
                                                 cert_id["issuer_key_hash"].native)
        entries.append(_Entry(cert_id, int(cert_id["serial_number"].native), ours))
    nonce = None
    for extension in tbs["request_extensions"]:
        name = extension["extn_id"].native
        if extension["critical"].native and name not in _UNDERSTOOD_REQUEST_EXTENSIONS:
            raise MalformedOcspRequest(f"critical request extension {name}")
        if name == "nonce":
            if nonce is not None:
                raise MalformedOcspRequest("two nonces")
            value = extension["extn_value"].parsed
            if not isinstance(value, core.OctetString) or not (
                    NONCE_MIN <= len(value.native) <= NONCE_MAX):
                raise MalformedOcspRequest("nonce length outside 1..32 octets")
            nonce = ocsp.ResponseDataExtension({
                "extn_id": "nonce", "critical": False, "extn_value": value})
    return _ParsedRequest(tuple(entries), nonce)
