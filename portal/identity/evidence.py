"""Identity evidence: the identity service's signed statement that a verified person
holds one public key, in the format the CA verifies (the CA's side is ca/evidence.py;
portal/ does not import ca/, so the format is produced here from its description):

    compact JWS (RFC 7515 §7.1), header {"alg": "ES256"|"ES384", "typ": "JWT",
    "x5t#S256": base64url SHA-256 of the service certificate's DER}, payload
    {"jti", "iat", "exp", "spki_sha256": hex SHA-256 of the key's DER
     SubjectPublicKeyInfo, "subject": {"given_name", "surname", "country",
     "serial_number": ETSI EN 319 412-1 §5.1.3 semantics identifier, e.g. IDCFR-...}},
    signature R || S, each the curve's size (RFC 7518 §3.4).

The CA trusts the service by its certificate (`qsign ca trust-identity CERT`) and
uses each `jti` once; the service binds each token to one key and keeps it short-lived.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.util import urlsafe_b64encode

from ground.files import write_atomically

KEY_FILE = "identity-service.key.pem"
CERT_FILE = "identity-service.cert.pem"
MAX_SPKI = 2048
_CURVES: dict[str, tuple[ec.EllipticCurve, str, hashes.SHA256 | hashes.SHA384]] = {
    "P-256": (ec.SECP256R1(), "ES256", hashes.SHA256()),
    "P-384": (ec.SECP384R1(), "ES384", hashes.SHA384()),
}
_NAME = re.compile(r"^[^\x00-\x1f<>\"\\]{1,64}$")  # what the CA accepts in a name
_IDENTIFIER = re.compile(r"^(IDC|PAS|PNO|TIN)([A-Z]{2})-[A-Za-z0-9./+-]{1,64}$")


class EvidenceRefused(ValueError):
    """Evidence cannot be made; `code` names the reason for the wire."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def spki_sha256(spki_der: bytes) -> str:
    """Hex SHA-256 of a DER SubjectPublicKeyInfo, after checking it is one (an EC or RSA
    public key that re-encodes to the same bytes: no trailing data, no BER)."""
    if not isinstance(spki_der, bytes) or not 0 < len(spki_der) <= MAX_SPKI:
        raise EvidenceRefused("KEY_INVALID", "the public key must be DER, at most "
                              f"{MAX_SPKI} bytes")
    try:
        key = serialization.load_der_public_key(spki_der)
        canonical = key.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError) as exc:
        raise EvidenceRefused("KEY_INVALID", "not a DER SubjectPublicKeyInfo") from exc
    if canonical != spki_der:
        raise EvidenceRefused("KEY_INVALID", "the public key is not in canonical DER")
    return hashlib.sha256(spki_der).hexdigest()


@dataclass(frozen=True)
class Subject:
    given_name: str
    surname: str
    country: str  # ISO 3166-1 alpha-2
    serial_number: str  # semantics identifier

    def as_json(self) -> dict[str, str]:
        for name, value in (("given_name", self.given_name), ("surname", self.surname)):
            if not _NAME.fullmatch(value):
                raise EvidenceRefused("NAME_INVALID", f"{name} must be 1-64 printable "
                                      "characters without <>\"\\")
        if not re.fullmatch(r"[A-Z]{2}", self.country):
            raise EvidenceRefused("STATE_UNSUPPORTED", "the country has no ISO 3166 code")
        if not _IDENTIFIER.fullmatch(self.serial_number):
            raise EvidenceRefused("STATE_UNSUPPORTED", "no ETSI semantics identifier for "
                                  "this document")
        return {"given_name": self.given_name, "surname": self.surname,
                "country": self.country, "serial_number": self.serial_number}


@dataclass(frozen=True)
class IssuedEvidence:
    token: str
    id: str
    spki_sha256: str
    expires_at: dt.datetime


class EvidenceSigner:
    """The identity service's signing key and its self-signed certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        curve = next((name for name, spec in _CURVES.items()
                      if spec[0].name == key.curve.name), None)
        if curve is None:
            raise ValueError("the identity service key must be P-256 or P-384")
        self.key = key
        self.certificate = certificate
        self.algorithm = _CURVES[curve][1]
        self._jwk = ECKey.import_key(key)
        self.thumbprint = urlsafe_b64encode(hashlib.sha256(
            certificate.public_bytes(serialization.Encoding.DER)).digest()).decode()

    @classmethod
    def generate(cls, name: str = "qsign reference identity service", *, curve: str = "P-256",
                 days: int = 3 * 365) -> EvidenceSigner:
        if curve not in _CURVES:
            raise ValueError(f"curve: one of {sorted(_CURVES)}")
        key = ec.generate_private_key(_CURVES[curve][0])
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, _CURVES[curve][2]))
        return cls(key, certificate)

    @classmethod
    def open(cls, directory: Path) -> EvidenceSigner:
        """Load the key and certificate from `directory`, creating them (0600) once."""
        key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = cls.generate()
        write_atomically(key_path, signer.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        write_atomically(cert_path, signer.certificate_pem, mode=0o644)
        return signer

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, payload: dict[str, Any]) -> str:
        """A compact JWS over the JSON payload (RFC 7515 §7.1; ECDSA R || S, RFC 7518 §3.4)."""
        header = {"alg": self.algorithm, "typ": "JWT", "x5t#S256": self.thumbprint}
        claims = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return jws.serialize_compact(header, claims, self._jwk, algorithms=[self.algorithm])

    def issue(self, subject: Subject, spki_der: bytes, *, now: dt.datetime,
              lifetime: dt.timedelta) -> IssuedEvidence:
        """Evidence for one key, with a fresh unique id (the CA accepts each id once)."""
        key_hash = spki_sha256(spki_der)
        jti = f"idv-{secrets.token_urlsafe(18)}"
        issued = int(now.timestamp())
        expires = issued + int(lifetime.total_seconds())
        token = self.sign({"jti": jti, "iat": issued, "exp": expires,
                           "spki_sha256": key_hash, "subject": subject.as_json()})
        return IssuedEvidence(token, jti, key_hash,
                              dt.datetime.fromtimestamp(expires, dt.UTC))
