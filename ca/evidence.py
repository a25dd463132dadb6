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

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

MAX_EVIDENCE_BYTES = 16_384
_ALGORITHMS: dict[str, tuple[hashes.HashAlgorithm, int]] = {
    "ES256": (hashes.SHA256(), 32), "ES384": (hashes.SHA384(), 48)}
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


def _b64url_decode(part: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", part):
        raise EvidenceError("malformed_evidence", "not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(cert: x509.Certificate) -> str:
    return _b64url(hashlib.sha256(cert.dump()).digest())


def verify(token: str, trusted: list[x509.Certificate], *, now: dt.datetime) -> Evidence:
    """Check signature, trust and dates; answer what the evidence says (RFC 7515 §5.2)."""
    if not isinstance(token, str) or len(token) > MAX_EVIDENCE_BYTES:
        raise EvidenceError("malformed_evidence", "evidence must be a compact JWS string")
    parts = token.split(".")
    if len(parts) != 3:
        raise EvidenceError("malformed_evidence", "a compact JWS has three parts")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvidenceError("malformed_evidence", f"undecodable evidence: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise EvidenceError("malformed_evidence", "header and payload must be JSON objects")
    algorithm = header.get("alg")
    if algorithm not in _ALGORITHMS or set(header) - {"alg", "typ", "x5t#S256"}:
        raise EvidenceError("malformed_evidence", "only ES256/ES384 and known header fields")
    signer = next((c for c in trusted if thumbprint(c) == header.get("x5t#S256")), None)
    if signer is None:
        raise EvidenceError("evidence_untrusted", "the evidence is not from a trusted "
                            "identity service")
    public = serialization.load_der_public_key(signer.public_key.dump())
    hash_algorithm, size = _ALGORITHMS[algorithm]
    if not isinstance(public, ec.EllipticCurvePublicKey) or len(signature) != 2 * size:
        raise EvidenceError("evidence_signature_invalid", "signature does not fit the key")
    der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                               int.from_bytes(signature[size:], "big"))
    try:
        public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hash_algorithm))
    except InvalidSignature:
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


def sign(payload: dict[str, Any], key: ec.EllipticCurvePrivateKey,
         cert: x509.Certificate) -> str:
    """Make evidence (the identity service's side; tests and the portal use it)."""
    algorithm = "ES384" if key.curve.key_size == 384 else "ES256"
    hash_algorithm, size = _ALGORITHMS[algorithm]
    header = {"alg": algorithm, "typ": "JWT", "x5t#S256": thumbprint(cert)}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(payload, separators=(",", ":")).encode()))
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hash_algorithm)))
    return signing_input + "." + _b64url(r.to_bytes(size, "big") + s.to_bytes(size, "big"))
