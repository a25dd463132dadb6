"""The identity service's evidence is what the CA verifies: fed to ca/evidence.py's
verifier and to a real enrolment with a key made on the simulated card."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.tokens.model import KeyType
from agent.tokens.piv import PivToken
from ca import evidence as ca_evidence
from ca.authority import Authority
from ca.enrolment import Enrolment, EnrolmentRefused, EnrolmentRequest
from ca.registry import Registry
from firmware_sim.attestation import Manufacturer
from firmware_sim.card import InProcessConnection
from portal.identity.evidence import EvidenceRefused, EvidenceSigner, Subject, spki_sha256
from tests.support.ca_fixtures import card_csr

NOW = dt.datetime.now(dt.UTC)
SUBJECT = Subject(given_name="Hélène Marie", surname="Dupont-Lefèvre", country="FR",
                  serial_number="IDCFR-EX1417776")


def _spki(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _trusted(signer: EvidenceSigner) -> list[asn1_x509.Certificate]:
    return [asn1_x509.Certificate.load(signer.certificate.public_bytes(
        serialization.Encoding.DER))]


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_the_ca_verifier_accepts_it(curve: str) -> None:
    signer = EvidenceSigner.generate(curve=curve)
    spki = _spki(ec.generate_private_key(ec.SECP256R1()))
    issued = signer.issue(SUBJECT, spki, now=NOW, lifetime=dt.timedelta(minutes=10))
    found = ca_evidence.verify(issued.token, _trusted(signer), now=NOW)
    assert found.id == issued.id
    assert found.spki_sha256 == hashlib.sha256(spki).hexdigest() == issued.spki_sha256
    assert (found.person.given_name, found.person.surname) == ("Hélène Marie",
                                                               "Dupont-Lefèvre")
    assert (found.person.country, found.person.serial_number) == ("FR", "IDCFR-EX1417776")
    assert found.expires_at == issued.expires_at
    header = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[0] + "=="))
    assert header["alg"] == ("ES256" if curve == "P-256" else "ES384")


def test_each_token_has_its_own_id() -> None:
    signer = EvidenceSigner.generate()
    spki = _spki(ec.generate_private_key(ec.SECP256R1()))
    one = signer.issue(SUBJECT, spki, now=NOW, lifetime=dt.timedelta(minutes=10))
    two = signer.issue(SUBJECT, spki, now=NOW, lifetime=dt.timedelta(minutes=10))
    assert one.id != two.id


def test_the_ca_refuses_it_tampered_expired_or_from_elsewhere() -> None:
    signer = EvidenceSigner.generate()
    spki = _spki(ec.generate_private_key(ec.SECP256R1()))
    token = signer.issue(SUBJECT, spki, now=NOW, lifetime=dt.timedelta(minutes=10)).token
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["subject"]["surname"] = "Other"
    forged = ".".join([head, base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(
        b"=").decode(), signature])
    with pytest.raises(ca_evidence.EvidenceError) as caught:
        ca_evidence.verify(forged, _trusted(signer), now=NOW)
    assert caught.value.code == "evidence_signature_invalid"
    with pytest.raises(ca_evidence.EvidenceError) as caught:
        ca_evidence.verify(token, _trusted(signer), now=NOW + dt.timedelta(minutes=11))
    assert caught.value.code == "evidence_expired"
    with pytest.raises(ca_evidence.EvidenceError) as caught:
        ca_evidence.verify(token, _trusted(EvidenceSigner.generate()), now=NOW)
    assert caught.value.code == "evidence_untrusted"


def test_the_ca_accepts_only_the_algorithms_it_pins() -> None:
    """RFC 8725 §3.1: the token's `alg` never chooses the verification; 'none', an HMAC
    keyed with the service's public certificate, ES512 or extra header fields are refused."""
    signer = EvidenceSigner.generate()
    spki = _spki(ec.generate_private_key(ec.SECP256R1()))
    head, payload, signature = signer.issue(SUBJECT, spki, now=NOW,
                                            lifetime=dt.timedelta(minutes=10)).token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def with_header(**fields: object) -> str:
        return encode(json.dumps({**header, **fields}).encode())

    certificate = signer.certificate.public_bytes(serialization.Encoding.DER)
    hs_head = with_header(alg="HS256")
    hs_signature = encode(hmac.new(certificate, f"{hs_head}.{payload}".encode(),
                                   hashlib.sha256).digest())
    for token in (f"{with_header(alg='none')}.{payload}.", f"{hs_head}.{payload}.{hs_signature}",
                  f"{with_header(alg='ES512')}.{payload}.{signature}",
                  f"{with_header(jwk={'kty': 'EC'})}.{payload}.{signature}",
                  f"{with_header(b64=False, crit=['b64'])}.{payload}.{signature}"):
        with pytest.raises(ca_evidence.EvidenceError) as caught:
            ca_evidence.verify(token, _trusted(signer), now=NOW)
        assert caught.value.code == "malformed_evidence"


def test_keys_are_checked() -> None:
    signer = EvidenceSigner.generate()
    rsa_spki = _spki(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert spki_sha256(rsa_spki) == hashlib.sha256(rsa_spki).hexdigest()
    for bad in (b"", b"\x30\x03\x02\x01\x00", rsa_spki + b"\x00", b"x" * 5000):
        with pytest.raises(EvidenceRefused) as caught:
            signer.issue(SUBJECT, bad, now=NOW, lifetime=dt.timedelta(minutes=1))
        assert caught.value.code == "KEY_INVALID"


def test_subjects_the_ca_would_refuse_are_not_signed() -> None:
    signer = EvidenceSigner.generate()
    spki = _spki(ec.generate_private_key(ec.SECP256R1()))
    for subject in (Subject("A<B", "C", "FR", "IDCFR-1"), Subject("A", "C", "FRA", "IDCFR-1"),
                    Subject("A", "C", "FR", "IDFR-1"), Subject("", "C", "FR", "IDCFR-1")):
        with pytest.raises(EvidenceRefused):
            signer.issue(subject, spki, now=NOW, lifetime=dt.timedelta(minutes=1))


def test_key_files_are_made_once_and_private(tmp_path: Path) -> None:
    first = EvidenceSigner.open(tmp_path / "idsvc")
    again = EvidenceSigner.open(tmp_path / "idsvc")
    assert first.thumbprint == again.thumbprint
    key_file = tmp_path / "idsvc" / "identity-service.key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_card_key_is_certified_by_the_ca_from_this_evidence(
        tmp_path: Path, manufacturer: Manufacturer, connection: InProcessConnection) -> None:
    authority = Authority.init(tmp_path / "ca")
    authority.trust_manufacturer(manufacturer.root_certificate.public_bytes(
        serialization.Encoding.PEM))
    signer = EvidenceSigner.open(tmp_path / "idsvc")
    authority.trust_identity_service(signer.certificate_pem)
    token = PivToken(connection)
    spki = token.generate_key("9C", KeyType.EC_P256)
    issued = signer.issue(SUBJECT, spki, now=dt.datetime.now(dt.UTC),
                          lifetime=dt.timedelta(minutes=10))
    enrolment = Enrolment(authority, Registry.open(None, tmp_path))
    request = EnrolmentRequest(card_csr(token, "9C", spki, "123456"), token.attest("9C"),
                               issued.token)
    record = enrolment.enrol(request)
    subject = asn1_x509.Certificate.load(record.der).subject.native
    assert (subject["given_name"], subject["surname"]) == ("Hélène Marie", "Dupont-Lefèvre")
    assert subject["serial_number"] == "IDCFR-EX1417776"
    with pytest.raises(EnrolmentRefused) as caught:  # single use, enforced by the CA
        enrolment.enrol(request)
    assert caught.value.code == "evidence_reused"
