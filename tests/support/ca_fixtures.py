"""Test parts for the CA: an identity service issuing evidence, and CSRs signed on a
(simulated) card through the token layer, as the agent will make them."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import time
from typing import Any

from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.jwk import ECKey

from agent.tokens.model import SignatureAlgorithm, Token
from ca import evidence


class IdentityService:
    """A stand-in identity service with its own key and self-signed certificate."""

    def __init__(self, name: str = "qsign test identity service") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            cx509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365)).sign(self.key, hashes.SHA256()))
        self.asn1 = x509.Certificate.load(self.certificate.public_bytes(
            serialization.Encoding.DER))

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def evidence(self, spki_sha256: str, **overrides: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "jti": f"ev-{secrets.token_hex(8)}",
            "iat": now, "exp": now + 600, "spki_sha256": spki_sha256,
            "subject": {"given_name": "Marie", "surname": "Curie", "country": "FR",
                        "serial_number": "IDCFR-12AB34567"},
        }
        payload.update(overrides)
        # Signed as given (no checks of the claims), so tests can hand the CA bad ones.
        header = {"alg": "ES256", "typ": "JWT", "x5t#S256": evidence.thumbprint(self.asn1)}
        return jws.serialize_compact(header, json.dumps(payload, separators=(",", ":")),
                                     ECKey.import_key(self.key), algorithms=["ES256"])


def card_csr(token: Token, credential_id: str, spki_der: bytes, pin: str) -> bytes:
    """A PKCS#10 request signed by the card's key (ECDSA P-256 / SHA-256)."""
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": x509.Name.build({"common_name": "ignored by the CA"}),
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki_der),
        "attributes": [],
    })
    digest = hashlib.sha256(info.dump()).digest()
    signature = token.sign_digest(credential_id, digest,
                                  SignatureAlgorithm.parse("ECDSA_SHA256"), pin=pin)
    request = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": signature,
    })
    return bytes(request.dump())


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode()
