"""Enrolment: a qualified certificate only for a key proven to live on a token and
a person proven by identity evidence (ETSI EN 319 411-2, QCP-n-qscd).

Each check has its own refusal code, so the caller (the agent, then the signer)
learns exactly what was wrong. The subject comes from the evidence only.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import pem, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca import evidence as evidence_module
from ca.authority import Authority
from ca.profiles import (
    Validity,
    natural_person_name,
    qualified_certificate,
    random_serial,
    spki_sha256,
)
from ca.registry import CertificateRecord, EvidenceReused, Registry

MAX_DER = 16_384
MAX_CHAIN = 4


class EnrolmentRefused(Exception):
    """A typed refusal: `code` for programs, the message for people."""

    def __init__(self, code: str, message: str,
                 existing: CertificateRecord | None = None) -> None:
        super().__init__(message)
        self.code = code
        # evidence_reused for the very key that already got its certificate: a client
        # that lost the first answer (a crash, a dropped connection) learns it here,
        # having just proved it holds the key; it never gets a second certificate.
        self.existing = existing


@dataclass(frozen=True)
class EnrolmentRequest:
    csr: bytes  # DER PKCS#10
    attestation: list[bytes]  # DER: the key's attestation certificate, then the device's
    evidence: str  # compact JWS

    @classmethod
    def from_json(cls, body: Any) -> EnrolmentRequest:
        """Validate the JSON body (OpenAPI schema EnrolmentRequest)."""
        if not isinstance(body, dict):
            raise EnrolmentRefused("bad_request", "the body must be a JSON object")
        unknown = set(body) - {"csr", "attestation", "evidence"}
        if unknown:
            raise EnrolmentRefused("bad_request", f"unknown field(s) {sorted(unknown)}")
        chain = body.get("attestation")
        if chain is None or chain == []:
            raise EnrolmentRefused("attestation_missing", "no device attestation was given")
        if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
            raise EnrolmentRefused("bad_request", f"attestation: a list of at most {MAX_CHAIN}")
        evidence = body.get("evidence")
        if not isinstance(evidence, str):
            raise EnrolmentRefused("bad_request", "evidence: a compact JWS string")
        return cls(_der(body.get("csr"), "csr", "CERTIFICATE REQUEST"),
                   [_der(item, "attestation", "CERTIFICATE") for item in chain], evidence)


def _der(value: Any, field: str, pem_type: str) -> bytes:
    if not isinstance(value, str) or not value or len(value) > 2 * MAX_DER:
        raise EnrolmentRefused("bad_request", f"{field}: a base64 DER or PEM string")
    raw = value.encode()
    try:
        if pem.detect(raw):
            kind, _, data = pem.unarmor(raw)
            if kind != pem_type:
                raise EnrolmentRefused("bad_request", f"{field}: expected a {pem_type}")
            return bytes(data)
        return base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise EnrolmentRefused("bad_request", f"{field}: not base64 or PEM") from exc


def _load_certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        cx509.load_der_x509_certificate(der)  # strict DER
        cert = x509.Certificate.load(der)
        # Parse now what the checks read, so that a malformed field is refused here.
        _ = (cert.public_key.dump(), cert["tbs_certificate"]["validity"].native, cert.ca)
    except ValueError as exc:
        raise EnrolmentRefused("malformed_attestation", f"{what}: not a certificate") from exc
    return cert


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cx509.load_der_x509_certificate(cert.dump()).verify_directly_issued_by(
            cx509.load_der_x509_certificate(issuer.dump()))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _within(cert: x509.Certificate, now: dt.datetime) -> bool:
    validity = cert["tbs_certificate"]["validity"]
    return bool(validity["not_before"].native <= now <= validity["not_after"].native)


def issue_qualified(authority: Authority, serial: int, subject: x509.Name,
                    public_key: asn1_keys.PublicKeyInfo) -> x509.Certificate:
    """The issuing CA's QCP-n-qscd certificate for `public_key` (ETSI EN 319 411-2),
    valid for the configured days and never past the issuing certificate."""
    return qualified_certificate(
        serial=serial, subject=subject, public_key=public_key, issuer=authority.issuing,
        issuer_key=authority.keys["issuing"],
        validity=Validity.starting_now(authority.config.validity_days,
                                       cap=authority.issuing.not_valid_after),
        points=authority.config.points)


class Enrolment:
    def __init__(self, authority: Authority, registry: Registry) -> None:
        self.authority = authority
        self.registry = registry

    def enrol(self, request: EnrolmentRequest) -> CertificateRecord:
        now = self.authority.now()
        public_key = self._proof_of_possession(request.csr)
        self._attested(request.attestation, public_key, now)
        try:
            found = evidence_module.verify(request.evidence,
                                           self.authority.identity_certificates, now=now)
        except evidence_module.EvidenceError as exc:
            raise EnrolmentRefused(exc.code, str(exc)) from exc
        key_hash = spki_sha256(public_key)
        if found.spki_sha256 != key_hash:
            raise EnrolmentRefused("evidence_not_bound",
                                   "the evidence names another key than the request's")
        person = found.person
        subject = natural_person_name(given_name=person.given_name, surname=person.surname,
                                      serial_number=person.serial_number,
                                      country=person.country)

        def build(serial: int) -> x509.Certificate:
            return issue_qualified(self.authority, serial, subject, public_key)

        try:
            return self.registry.issue(build, new_serial=random_serial, evidence_id=found.id,
                                       spki_sha256=key_hash)
        except EvidenceReused as exc:
            earlier = self.registry.by_evidence(found.id)
            same_key = earlier is not None and earlier.spki_sha256 == key_hash
            raise EnrolmentRefused("evidence_reused", str(exc),
                                   existing=earlier if same_key else None) from exc

    @staticmethod
    def _proof_of_possession(der: bytes) -> asn1_keys.PublicKeyInfo:
        """PKCS#10 signature by the key it carries (RFC 2986 §4.2)."""
        if len(der) > MAX_DER:
            raise EnrolmentRefused("malformed_csr", "the CSR is too large")
        try:
            request = cx509.load_der_x509_csr(der)
            parsed = asn1_csr.CertificationRequest.load(der)
            public_key = parsed["certification_request_info"]["subject_pk_info"]
            _ = public_key.native
            valid = request.is_signature_valid
            key = request.public_key()
        except (ValueError, TypeError) as exc:
            raise EnrolmentRefused("malformed_csr", f"unreadable CSR: {exc}") from exc
        if not valid:
            raise EnrolmentRefused("csr_signature_invalid",
                                   "the CSR is not signed by the key it carries")
        if not ((isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size in (256, 384))
                or (isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048)):
            raise EnrolmentRefused("key_not_accepted", "keys are EC P-256/P-384 or RSA >= 2048")
        return public_key

    def _attested(self, chain: list[bytes], public_key: asn1_keys.PublicKeyInfo,
                  now: dt.datetime) -> None:
        """The key's attestation certificate, issued by the device's attestation
        certificate, issued by a trusted manufacturer root. Field tokens attest only keys
        generated on the device (imported keys cannot be attested)."""
        if len(chain) < 2:
            raise EnrolmentRefused("attestation_missing",
                                   "the attestation needs the key's and the device's "
                                   "certificates")
        attested = _load_certificate(chain[0], "attestation")
        device = _load_certificate(chain[1], "device certificate")
        if not _issued_by(attested, device):
            raise EnrolmentRefused("attestation_untrusted",
                                   "the attestation is not signed by the device certificate")
        roots = self.authority.manufacturer_roots
        if not any(_issued_by(device, root) and _within(root, now) for root in roots):
            raise EnrolmentRefused("attestation_untrusted",
                                   "the device certificate does not chain to a trusted "
                                   "manufacturer root")
        if not device.ca or not _within(device, now) or not _within(attested, now):
            raise EnrolmentRefused("attestation_untrusted",
                                   "the device certificate is not a valid attestation CA")
        if attested.public_key.dump() != public_key.dump():
            raise EnrolmentRefused("attestation_key_mismatch",
                                   "the attestation is for another key than the CSR's")
