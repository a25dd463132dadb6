"""Certificate enrolment for a key made on the token: the agent's side.

    1. generate the key on the token (it never leaves);
    2. get the token's attestation for it (key certificate, then device certificate);
    3. build a PKCS#10 request signed by that key on the token (proof of possession);
    4. send CSR + attestation + identity evidence (a compact JWS from the identity
       service, bound to the key's SubjectPublicKeyInfo hash) to the CA's /v1/enrol;
    5. write the issued certificate back to the token.

Steps 1-3 and 5 run on the token's worker (they block); step 4 is HTTP. A key that
already has the CA's certificate is not enrolled twice (`needs_certificate`).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import aiohttp
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509

from agent.tokens.model import KeyType, SignatureAlgorithm, Token


class EnrolmentFailed(Exception):
    """The CA refused (`code` is its reason, e.g. 'evidence_reused') or was unreachable
    ('ca_unreachable')."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KeyMaterial:
    spki: bytes  # DER SubjectPublicKeyInfo
    csr: bytes  # DER PKCS#10, signed on the token
    attestation: list[bytes]

    @property
    def spki_sha256(self) -> str:
        return hashlib.sha256(self.spki).hexdigest()


@dataclass(frozen=True)
class Enrolled:
    serial: str
    certificate: bytes
    chain: list[bytes]


_CSR_ALGORITHMS = {
    KeyType.EC_P256: ("ECDSA_SHA256", "sha256_ecdsa"),
    KeyType.EC_P384: ("ECDSA_SHA384", "sha384_ecdsa"),
    KeyType.RSA_2048: ("RSA_PKCS1V15_SHA256", "sha256_rsa"),
}


def key_material(token: Token, key_id: str, key_type: KeyType, pin: str) -> KeyMaterial:
    """Steps 1-3, in one worker job. The subject in the CSR is a placeholder: the CA
    takes the person's name from the identity evidence, never from the request."""
    spki = token.generate_key(key_id, key_type, pin=pin)
    attestation = token.attest(key_id)
    algorithm, oid_name = _CSR_ALGORITHMS[key_type]
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": x509.Name.build({"common_name": "qsign enrolment"}),
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki),
        "attributes": [],
    })
    signature_algorithm = SignatureAlgorithm.parse(algorithm)
    digest = hashlib.new(signature_algorithm.hash.value.lower(), info.dump()).digest()
    signature = token.sign_digest(key_id, digest, signature_algorithm, pin=pin)
    request = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": oid_name},
        "signature": signature,
    })
    return KeyMaterial(spki, bytes(request.dump()), attestation)


async def submit(session: aiohttp.ClientSession, ca_url: str, material: KeyMaterial,
                 evidence: str) -> Enrolled:
    """Step 4: the CA's answer, or EnrolmentFailed with the CA's reason code."""
    body = {"csr": _b64(material.csr), "attestation": [_b64(c) for c in material.attestation],
            "evidence": evidence}
    try:
        async with session.post(f"{ca_url.rstrip('/')}/v1/enrol", json=body,
                                timeout=aiohttp.ClientTimeout(total=30)) as response:
            answer: Any = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise EnrolmentFailed("ca_unreachable", f"the CA did not answer: {exc}") from exc
    if status != 201 or not isinstance(answer, dict):
        code = answer.get("error", "refused") if isinstance(answer, dict) else "refused"
        message = answer.get("message", "") if isinstance(answer, dict) else ""
        raise EnrolmentFailed(str(code), str(message) or f"HTTP {status}")
    try:
        return Enrolled(str(answer["serial"]), base64.b64decode(answer["certificate"]),
                        [base64.b64decode(c) for c in answer["chain"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise EnrolmentFailed("ca_answer_malformed", "the CA's answer is malformed") from exc


def needs_certificate(token: Token, key_id: str, issuer: bytes) -> bool:
    """True unless the key already holds a certificate from `issuer` (DER CA cert)."""
    credential = next((c for c in token.credentials() if c.id == key_id), None)
    if credential is None or credential.certificate is None:
        return True
    issued_by = x509.Certificate.load(credential.certificate).issuer
    return bool(issued_by != x509.Certificate.load(issuer).subject)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
