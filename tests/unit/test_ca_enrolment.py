"""Enrolment against a real CA directory, keys made on the simulated card through the
token layer, evidence from a test identity service: each refusal has its code."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.sign.validation.qualified.assess import QualificationAssessor

from agent.tokens.model import KeyType
from agent.tokens.piv import PivToken
from ca.authority import Authority
from ca.enrolment import Enrolment, EnrolmentRefused, EnrolmentRequest
from ca.profiles import QCP_N_QSCD
from ca.registry import Registry
from firmware_sim.attestation import Manufacturer
from firmware_sim.card import InProcessConnection
from tests.support.ca_fixtures import IdentityService, b64, card_csr

PIN = "123456"


@dataclass
class World:
    authority: Authority
    registry: Registry
    enrolment: Enrolment
    identity: IdentityService
    token: PivToken
    spki: bytes  # the 9C key, generated on the card
    spki_hash: str
    csr: bytes
    attestation: list[bytes]

    def request(self, **overrides: object) -> EnrolmentRequest:
        fields: dict[str, object] = {
            "csr": self.csr, "attestation": self.attestation,
            "evidence": self.identity.evidence(self.spki_hash)}
        fields.update(overrides)
        return EnrolmentRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ca_authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.init(tmp_path_factory.mktemp("ca") / "ca")


@pytest.fixture
def world(ca_authority: Authority, manufacturer: Manufacturer, connection: InProcessConnection,
          tmp_path: Path) -> World:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    authority = ca_authority
    if not authority.manufacturer_roots:
        authority.trust_manufacturer(manufacturer.root_certificate.public_bytes(Encoding.PEM))
    identity = IdentityService()
    authority.trust_identity_service(identity.pem)
    registry = Registry.open(None, tmp_path)
    token = PivToken(connection)
    spki = token.generate_key("9C", KeyType.EC_P256)
    return World(authority, registry, Enrolment(authority, registry), identity, token, spki,
                 hashlib.sha256(spki).hexdigest(), card_csr(token, "9C", spki, PIN),
                 token.attest("9C"))


def test_issues_a_qualified_certificate_from_the_evidence(world: World, tmp_path: Path) -> None:
    record = world.enrolment.enrol(world.request())
    cert = x509.Certificate.load(record.der)
    subject = cert.subject.native
    assert subject["given_name"] == "Marie" and subject["surname"] == "Curie"
    assert subject["serial_number"] == "IDCFR-12AB34567"
    assert "ignored by the CA" not in cert.subject.human_friendly
    assert cert.public_key.dump() == x509.Certificate.load(world.attestation[0]).public_key.dump()
    assert cert.serial_number.bit_length() >= 64
    validity = cert["tbs_certificate"]["validity"]
    years = (validity["not_after"].native - validity["not_before"].native).days / 365.25
    assert 4.99 < years <= 5.01
    assert cert.key_usage_value.native == {"non_repudiation"}
    assert [p["policy_identifier"].dotted for p in cert.certificate_policies_value] == [
        QCP_N_QSCD]
    status = QualificationAssessor._process_qc_statements(cert)
    assert status.qualified and status.qc_type.value == "qct_esign"
    assert status.qc_key_security.name == "QSCD"
    (tmp_path / "qc.der").write_bytes(record.der)
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(tmp_path / "qc.der"),
                           "-noout", "-text"], capture_output=True, text=True, check=True).stdout
    for needle in ("0.4.0.194112.1.2", "qcStatements", "Non Repudiation", "OCSP - URI",
                   "CRL Distribution Points"):
        assert needle in text
    assert world.registry.get(record.serial) == record


def _refused(world: World, request: EnrolmentRequest, code: str) -> None:
    with pytest.raises(EnrolmentRefused) as refused:
        world.enrolment.enrol(request)
    assert refused.value.code == code, str(refused.value)


def test_no_attestation(world: World) -> None:
    with pytest.raises(EnrolmentRefused) as refused:
        EnrolmentRequest.from_json({"csr": b64(world.csr), "attestation": [],
                                    "evidence": "x.y.z"})
    assert refused.value.code == "attestation_missing"
    _refused(world, world.request(attestation=world.attestation[:1]), "attestation_missing")


def test_attestation_of_another_key(world: World) -> None:
    world.token.generate_key("9A", KeyType.EC_P256)
    _refused(world, world.request(attestation=world.token.attest("9A")),
             "attestation_key_mismatch")


def test_attestation_from_an_untrusted_root(world: World, connection: InProcessConnection,
                                            tmp_path: Path) -> None:
    from firmware_sim.card import SimulatedCard, manufacture

    stranger = Manufacturer.open(tmp_path / "stranger")
    manufacture(tmp_path / "other.json", manufacturer=stranger)
    other = PivToken(InProcessConnection(SimulatedCard.open(tmp_path / "other.json")))
    spki = other.generate_key("9C", KeyType.EC_P256)
    import hashlib

    request = EnrolmentRequest(card_csr(other, "9C", spki, PIN), other.attest("9C"),
                               world.identity.evidence(hashlib.sha256(spki).hexdigest()))
    _refused(world, request, "attestation_untrusted")


def test_csr_signature_must_verify(world: World) -> None:
    broken = bytearray(world.csr)
    broken[-5] ^= 0x01  # inside the ECDSA signature's last INTEGER
    _refused(world, world.request(csr=bytes(broken)), "csr_signature_invalid")


def test_evidence_expired(world: World) -> None:
    past = int(time.time()) - 3600
    _refused(world, world.request(evidence=world.identity.evidence(
        world.spki_hash, iat=past - 600, exp=past)), "evidence_expired")


def test_evidence_for_another_key(world: World) -> None:
    _refused(world, world.request(evidence=world.identity.evidence("0" * 64)),
             "evidence_not_bound")


def test_evidence_used_once(world: World) -> None:
    token = world.identity.evidence(world.spki_hash)
    world.enrolment.enrol(world.request(evidence=token))
    _refused(world, world.request(evidence=token), "evidence_reused")
    assert len(world.registry.all()) == 1


def test_evidence_from_an_untrusted_service(world: World) -> None:
    stranger = IdentityService("a stranger")
    _refused(world, world.request(evidence=stranger.evidence(world.spki_hash)),
             "evidence_untrusted")


def test_evidence_tampered(world: World) -> None:
    header, payload, signature = world.identity.evidence(world.spki_hash).split(".")
    claims = base64.urlsafe_b64decode(payload + "==").replace(b"Curie", b"Cur1e")
    forged = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    _refused(world, world.request(evidence=f"{header}.{forged}.{signature}"),
             "evidence_signature_invalid")


def test_evidence_with_a_bad_semantics_identifier(world: World) -> None:
    bad = world.identity.evidence(world.spki_hash, subject={
        "given_name": "Marie", "surname": "Curie", "country": "FR", "serial_number": "12345"})
    _refused(world, world.request(evidence=bad), "malformed_evidence")


FIELD = st.one_of(st.binary(max_size=300), st.text(max_size=50), st.integers(),
                  st.none(), st.lists(st.binary(max_size=50), max_size=3))


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(csr=FIELD, chain=FIELD, evidence=FIELD, which=st.integers(0, 2))
def test_malformed_fields_give_typed_refusals(world: World, csr: object, chain: object,
                                              evidence: object, which: int) -> None:
    def encode(value: object) -> object:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, list):
            return [base64.b64encode(v).decode() for v in value]
        return value

    body: dict[str, object] = {"csr": b64(world.csr),
                               "attestation": [b64(d) for d in world.attestation],
                               "evidence": world.identity.evidence(world.spki_hash)}
    body[("csr", "attestation", "evidence")[which]] = encode((csr, chain, evidence)[which])
    try:
        world.enrolment.enrol(EnrolmentRequest.from_json(body))
    except EnrolmentRefused as refused:
        assert refused.code and str(refused)
        return
    # Only the untouched fields can make a valid request; a random one never does.
    raise AssertionError(f"accepted a request with a random {body}")


def test_a_crash_during_issuance_loses_nothing(world: World, tmp_path: Path) -> None:
    """Signing happens inside the transaction: a failure there leaves no row, no serial."""
    record = world.enrolment.enrol(world.request())

    def exploding(serial: int) -> x509.Certificate:
        raise RuntimeError("power cut while signing")

    with pytest.raises(RuntimeError):
        world.registry.issue(exploding, new_serial=lambda: record.serial + 1,
                             evidence_id="ev-never-stored", spki_sha256="0" * 64)
    assert [r.serial for r in world.registry.all()] == [record.serial]
    assert world.registry.get(record.serial + 1) is None


def test_expired_issuer_caps_validity(world: World) -> None:
    record = world.enrolment.enrol(world.request())
    issuer_end = world.authority.issuing["tbs_certificate"]["validity"]["not_after"].native
    assert record.not_after <= issuer_end
    assert record.not_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=4 * 365)
