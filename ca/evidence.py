"""Identity evidence: what an identity service says about a person, for one key.

A compact JWS (RFC 7515) signed ES256 or ES384 by an identity service whose
certificate the CA trusts (DIR/trust/identity/), named in the header by its
SHA-256 thumbprint (`x5t#S256`). The payload:

    {"jti": "<unique id>", "iat": <unix time>, "exp": <unix time>,
     "spki_sha256": "<hex SHA-256 of the key's DER SubjectPublicKeyInfo>",
     "subject": {"given_name": "...", "surname": "...", "country": "FR",
                 "serial_number": "IDCFR-..."}}

`serial_number` carries an ETSI EN 319 412-1 §5.1.3 semantics identifier:
IDC (national identity card), PAS (passport), PNO (national personal number)
or TIN (tax number), then the ISO 3166 country code, a hyphen, the identifier.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509
from joserfc import jws
from joserfc.errors import InvalidKeyCurveError, InvalidKeyTypeError, JoseError
from joserfc.jwk import ECKey
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

MAX_EVIDENCE_BYTES = 16_384
# The only algorithms the CA accepts (RFC 8725 §3.1: the verifier pins them, never the token).
ALGORITHMS = ("ES256", "ES384")
_REGISTRY = jws.JWSRegistry(algorithms=ALGORITHMS)
_HEADER_FIELDS = {"alg", "typ", "x5t#S256"}
SEMANTICS_IDENTIFIER = re.compile(r"^(IDC|PAS|PNO|TIN)([A-Z]{2})-[A-Za-z0-9./+-]{1,64}$")
_NAME = re.compile(r"^[^\x00-\x1f<>\"\\]{1,64}$")
CLOCK_SKEW = dt.timedelta(minutes=5)


class EvidenceError(ValueError):
    """Evidence refused; `code` names the reason for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Person:
    given_name: str
    surname: str
    country: str
    serial_number: str


@dataclass(frozen=True)
class Evidence:
    id: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    spki_sha256: str
    person: Person
    issuer: str  # the identity service certificate's subject


def thumbprint(cert: x509.Certificate) -> str:
    """The certificate's `x5t#S256` (RFC 7515 §4.1.8): base64url SHA-256 of its DER."""
    return urlsafe_b64encode(hashlib.sha256(cert.dump()).digest()).decode()


def verify(token: str, trusted: list[x509.Certificate], *, now: dt.datetime) -> Evidence:
    """Check signature, trust and dates; answer what the evidence says (RFC 7515 §5.2)."""
    if not isinstance(token, str) or len(token) > MAX_EVIDENCE_BYTES:
        raise EvidenceError("malformed_evidence", "evidence must be a compact JWS string")
    try:
        signed = jws.extract_compact(token.encode(), registry=_REGISTRY)
        payload = json.loads(signed.payload)
        urlsafe_b64decode(signed.segments["signature"])
    except (JoseError, ValueError, UnicodeError) as exc:
        raise EvidenceError("malformed_evidence", f"undecodable evidence: {exc}") from exc
    header = signed.headers()
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise EvidenceError("malformed_evidence", "header and payload must be JSON objects")
    if header.get("alg") not in ALGORITHMS or set(header) - _HEADER_FIELDS:
        raise EvidenceError("malformed_evidence", "only ES256/ES384 and known header fields")
    signer = next((c for c in trusted if thumbprint(c) == header.get("x5t#S256")), None)
    if signer is None:
        raise EvidenceError("evidence_untrusted", "the evidence is not from a trusted "
                            "identity service")
    try:
        key = ECKey.import_key(signer.public_key.dump())
        valid = jws.validate_compact(signed, key, registry=_REGISTRY)
    except (InvalidKeyTypeError, InvalidKeyCurveError) as exc:  # an RSA key, another curve
        raise EvidenceError("evidence_signature_invalid", "signature does not fit "
                            "the key") from exc
    except JoseError as exc:
        raise EvidenceError("malformed_evidence", f"evidence refused: {exc}") from exc
    if not valid:
        raise EvidenceError("evidence_signature_invalid", "the evidence signature is "
                            "invalid") from None
    evidence = _parse_payload(payload, signer)
    if evidence.expires_at <= now:
        raise EvidenceError("evidence_expired", "the evidence has expired")
    if evidence.issued_at > now + CLOCK_SKEW:
        raise EvidenceError("evidence_not_yet_valid", "the evidence is dated in the future")
    return evidence


def _parse_payload(payload: dict[str, Any], signer: x509.Certificate) -> Evidence:
    def text(obj: dict[str, Any], key: str, pattern: re.Pattern[str] = _NAME) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise EvidenceError("malformed_evidence", f"bad or missing {key!r}")
        return value

    def when(key: str) -> dt.datetime:
        value = payload.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**33:
            raise EvidenceError("malformed_evidence", f"bad or missing {key!r}")
        return dt.datetime.fromtimestamp(value, dt.UTC)

    subject = payload.get("subject")
    if not isinstance(subject, dict):
        raise EvidenceError("malformed_evidence", "missing 'subject'")
    serial = text(subject, "serial_number", SEMANTICS_IDENTIFIER)
    country = text(subject, "country", re.compile(r"^[A-Z]{2}$"))
    match = SEMANTICS_IDENTIFIER.fullmatch(serial)
    assert match is not None
    spki = text(payload, "spki_sha256", re.compile(r"^[0-9a-f]{64}$"))
    return Evidence(
        id=text(payload, "jti", re.compile(r"^[A-Za-z0-9._:-]{8,128}$")),
        issued_at=when("iat"), expires_at=when("exp"), spki_sha256=spki,
        person=Person(text(subject, "given_name"), text(subject, "surname"), country, serial),
        issuer=signer.subject.human_friendly)

