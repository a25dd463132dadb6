"""Certificate enrolment for a key made on the token: the agent's side.

    1. generate the key on the token (it never leaves);
    2. get the token's attestation for it (key certificate, then device certificate);
    3. build a PKCS#10 request signed by that key on the token (proof of possession);
    4. send CSR + attestation + identity evidence (a compact JWS from the identity
       service, bound to the key's SubjectPublicKeyInfo hash) to the CA's /v1/enrol;
    5. write the issued certificate back to the token.

Steps 1-3 and 5 run on the token's worker (they block); step 4 is HTTP. A key that
already has the CA's certificate is not enrolled twice (`needs_certificate`).

Nothing changes on the token before the card has checked the PIN, and a key whose slot
holds a valid certificate for it is replaced only with the signer's confirmation given
outside the page (SECURITY #34).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization

from agent.confirmations import Confirmations
from agent.tokens.model import KeyType, SignatureAlgorithm, Token
from agent.tokens.registry import TokenRegistry
from ground.sql import Database

log = logging.getLogger(__name__)


class EnrolmentFailed(Exception):
    """The CA refused (`code` is its reason, e.g. 'evidence_reused') or was unreachable
    ('ca_unreachable'). `issued`: the certificate the CA had already issued for this
    very key and evidence (a retry after a lost answer)."""

    def __init__(self, code: str, message: str, issued: Enrolled | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.issued = issued


class EnrolmentUnknown(Exception):
    pass


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


MAX_ANSWER = 64 * 1024  # a certificate and its chain
_CSR_ALGORITHMS = {
    KeyType.EC_P256: ("ECDSA_SHA256", "sha256_ecdsa"),
    KeyType.EC_P384: ("ECDSA_SHA384", "sha384_ecdsa"),
    KeyType.RSA_2048: ("RSA_PKCS1V15_SHA256", "sha256_rsa"),
}


def key_material(token: Token, key_id: str, key_type: KeyType, pin: str) -> KeyMaterial:
    """Steps 1-3, in one worker job; the token checks the PIN before it generates, and
    is locked again after each step. The subject in the CSR is a placeholder: the CA
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
        # The configured CA only: no redirects followed, a bounded answer (SECURITY #32).
        async with session.post(f"{ca_url.rstrip('/')}/v1/enrol", json=body,
                                timeout=aiohttp.ClientTimeout(total=30),
                                allow_redirects=False) as response:
            status = response.status
            if 300 <= status < 400:
                raise EnrolmentFailed("ca_redirect", f"the CA answered a redirect ({status})")
            answer: Any = json.loads(await response.content.read(MAX_ANSWER))
    except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
        raise EnrolmentFailed("ca_unreachable", f"the CA did not answer: {exc}") from exc
    if status != 201 or not isinstance(answer, dict):
        code = answer.get("error", "refused") if isinstance(answer, dict) else "refused"
        message = answer.get("message", "") if isinstance(answer, dict) else ""
        issued = None
        if code == "evidence_reused" and isinstance(answer, dict) and "certificate" in answer:
            issued = _enrolled(answer)
        raise EnrolmentFailed(str(code), str(message) or f"HTTP {status}", issued)
    return _enrolled(answer)


def _enrolled(answer: dict[str, Any]) -> Enrolled:
    try:
        return Enrolled(str(answer["serial"]), base64.b64decode(answer["certificate"]),
                        [base64.b64decode(c) for c in answer["chain"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise EnrolmentFailed("ca_answer_malformed", "the CA's answer is malformed") from exc


def certified_key(token: Token, key_id: str, pin: str) -> cx509.Certificate | None:
    """The PIN checked by the token first (a wrong one changes nothing, asks nothing);
    then the certificate in `key_id`'s slot when it is valid now and certifies the slot's
    key: a key whose loss the signer must agree to. A route that cannot tell the slot's
    key counts as certified."""
    token.verify_pin(pin)
    credential = next((c for c in token.credentials() if c.id == key_id.upper()), None)
    if credential is None or credential.certificate is None:
        return None
    try:
        certificate = cx509.load_der_x509_certificate(credential.certificate)
        certified = _spki(certificate.public_key())
    except ValueError:
        return None  # unreadable: it certifies nothing
    now = dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return None
    held = token.public_key(key_id)
    if held is not None and _spki(serialization.load_der_public_key(held)) != certified:
        return None
    return certificate


def _spki(public: Any) -> bytes:
    der: bytes = public.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def needs_certificate(token: Token, key_id: str, issuer: bytes) -> bool:
    """True unless the key already holds a certificate from `issuer` (DER CA cert)."""
    credential = next((c for c in token.credentials() if c.id == key_id), None)
    if credential is None or credential.certificate is None:
        return True
    issued_by = x509.Certificate.load(credential.certificate).issuer
    return bool(issued_by != x509.Certificate.load(issuer).subject)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_SCHEMA = ("""CREATE TABLE IF NOT EXISTS enrolments (
    id TEXT PRIMARY KEY, token_id TEXT NOT NULL, key_id TEXT NOT NULL,
    key_type TEXT NOT NULL, spki BLOB NOT NULL, csr BLOB NOT NULL, attestation TEXT NOT NULL,
    state TEXT NOT NULL, serial TEXT, certificate BLOB, chain TEXT, created_at TEXT NOT NULL)
""",)


_COLUMNS = "id, token_id, key_id, spki, csr, attestation, state, serial, certificate, chain"


@dataclass(frozen=True)
class Pending:
    id: str
    token_id: str
    key_id: str
    material: KeyMaterial
    state: str  # "generated", "issued" (the CA answered), "written" (on the token)
    issued: Enrolled | None
    resumed: bool = False


class EnrolmentService:
    """`enroll/generate` and `enroll/complete`, durable between the two: a pending
    enrolment for a token's key is resumed (no second key), the CA's answer is kept
    before the certificate is written (no second certificate), and a completed one is
    answered again."""

    def __init__(self, registry: TokenRegistry, db: Database, ca_url: str | None,
                 confirmations: Confirmations) -> None:
        self.registry = registry
        self.db = db
        self.ca_url = ca_url
        self.confirmations = confirmations
        with db.transaction() as cur:
            for statement in _SCHEMA:
                cur.execute(statement)

    def _load(self, where: str, params: tuple[Any, ...]) -> Pending | None:
        """`where` is one of this class's constants; values go in `params`."""
        query = f"SELECT {_COLUMNS} FROM enrolments WHERE {where} ORDER BY created_at DESC"  # noqa: S608
        with self.db.transaction() as cur:
            cur.execute(query + " LIMIT 1", params)
            row = cur.fetchone()
        if row is None:
            return None
        issued = None if row[8] is None else Enrolled(
            row[7], bytes(row[8]), [base64.b64decode(c) for c in json.loads(row[9])])
        material = KeyMaterial(bytes(row[3]), bytes(row[4]),
                               [base64.b64decode(c) for c in json.loads(row[5])])
        return Pending(row[0], row[1], row[2], material, row[6], issued)

    async def generate(self, token_id: str, key_id: str, key_type: KeyType, pin: str, *,
                       origin: str, confirmation: str | None = None) -> Pending:
        """A key for `key_id`, or the pending enrolment's. The card checks the PIN before
        anything; replacing a key its valid certificate certifies needs `confirmation`, a
        code the signer approved outside the page (else ConfirmationRequired)."""
        pending = self._load("token_id = ? AND key_id = ? AND state != 'written'",
                             (token_id, key_id))
        if pending is not None:
            await self.registry.call(token_id, lambda token: token.verify_pin(pin))
            log.info("enrolment %s resumed: the key in %s/%s is kept", pending.id, token_id,
                     key_id)
            return Pending(pending.id, token_id, key_id, pending.material, pending.state,
                           pending.issued, resumed=True)
        certificate = await self.registry.call(
            token_id, lambda token: certified_key(token, key_id, pin))
        if certificate is not None:
            self.confirmations.require(
                origin=origin, action="replace-key", subject=f"{token_id}/{key_id}",
                description=(f"replace the key in {token_id} slot {key_id}, certified to "
                             f"{certificate.subject.rfc4514_string()} until "
                             f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"),
                presented=confirmation)
            log.info("enrolment: the certified key in %s/%s is replaced, as confirmed "
                     "outside the page", token_id, key_id)
        material = await self.registry.call(
            token_id, lambda token: key_material(token, key_id, key_type, pin))
        enrolment_id = secrets.token_urlsafe(16)
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO enrolments (id, token_id, key_id, key_type, spki, csr, "
                        "attestation, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (enrolment_id, token_id, key_id, key_type.value, material.spki,
                         material.csr, json.dumps([_b64(c) for c in material.attestation]),
                         "generated", dt.datetime.now(dt.UTC).isoformat()))
        log.info("enrolment %s: key generated in %s/%s", enrolment_id, token_id, key_id)
        return Pending(enrolment_id, token_id, key_id, material, "generated", None)

    async def complete(self, enrolment_id: str, evidence: str) -> Pending:
        pending = self._load("id = ?", (enrolment_id,))
        if pending is None:
            raise EnrolmentUnknown(enrolment_id)
        issued = pending.issued
        if issued is None:
            if not self.ca_url:
                raise EnrolmentFailed("ca_not_configured", "the agent has no ca_url")
            async with aiohttp.ClientSession() as session:
                try:
                    issued = await submit(session, self.ca_url, pending.material, evidence)
                except EnrolmentFailed as exc:
                    if exc.issued is None:
                        raise
                    issued = exc.issued  # our own earlier request: the same certificate
            with self.db.transaction() as cur:  # kept before the token is touched
                cur.execute("UPDATE enrolments SET state = 'issued', serial = ?, "
                            "certificate = ?, chain = ? WHERE id = ?",
                            (issued.serial, issued.certificate,
                             json.dumps([_b64(c) for c in issued.chain]), enrolment_id))
        if pending.state != "written":
            certificate = issued.certificate
            await self.registry.call(
                pending.token_id,
                lambda token: token.put_certificate(pending.key_id, certificate))
            with self.db.transaction() as cur:
                cur.execute("UPDATE enrolments SET state = 'written' WHERE id = ?",
                            (enrolment_id,))
            log.info("enrolment %s: certificate %s written to %s/%s", enrolment_id,
                     issued.serial, pending.token_id, pending.key_id)
        return Pending(pending.id, pending.token_id, pending.key_id, pending.material,
                       "written", issued)
