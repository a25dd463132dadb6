"""The CRL publisher (ca/crl.py), read and verified by OpenSSL."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest
from asn1crypto import crl

from ca.authority import Authority, CaConfig
from ca.crl import CrlPublisher
from ca.profiles import key_identifier
from tests.support.ca_status import Clock, StatusCa, make_status_ca, openssl, write_pem


@pytest.fixture
def ca(tmp_path: Path) -> StatusCa:
    return make_status_ca(tmp_path)


@pytest.fixture
def chain(ca: StatusCa, tmp_path: Path) -> Path:
    path = tmp_path / "chain.pem"
    path.write_bytes(ca.root_pem.read_bytes() + ca.issuing_pem.read_bytes())
    return path


def save(tmp_path: Path, der: bytes) -> Path:
    path = tmp_path / f"crl-{secrets.token_hex(4)}.der"
    path.write_bytes(der)
    return path


def text(tmp_path: Path, der: bytes) -> str:
    return openssl("crl", "-inform", "DER", "-in", save(tmp_path, der), "-noout",
                   "-text").stdout


def parse(der: bytes) -> crl.CertificateList:
    parsed = crl.CertificateList.load(der, strict=True)
    _ = parsed.native
    return parsed


def number(der: bytes) -> int:
    return int(parse(der).crl_number_value.native)


def test_openssl_lists_the_revoked_serial_with_its_reason(tmp_path: Path,
                                                          ca: StatusCa) -> None:
    ca.issue("Good")
    revoked = ca.issue("Revoked")
    ca.registry.revoke(revoked.serial, "key_compromise")
    out = text(tmp_path, CrlPublisher(ca.authority, ca.registry).current())
    assert "Version 2 (0x1)" in out
    assert f"Serial Number: {revoked.serial:X}" in out
    assert "Key Compromise" in out
    assert out.count("Serial Number:") == 1
    assert "X509v3 CRL Number:" in out
    assert "X509v3 Authority Key Identifier:" in out
    assert "Issuer: C = FR, O = qsign, CN = qsign Qualified CA Issuing" in out


def test_openssl_verifies_the_signature_with_the_chain(tmp_path: Path, ca: StatusCa,
                                                       chain: Path) -> None:
    revoked = ca.issue()
    ca.registry.revoke(revoked.serial, "superseded")
    path = save(tmp_path, CrlPublisher(ca.authority, ca.registry).current())
    out = openssl("crl", "-inform", "DER", "-in", path, "-noout", "-CAfile", chain).stdout
    assert "verify OK" in out
    # Control: another CA's chain does not verify it.
    other = Authority.init(tmp_path / "other")
    other_chain = tmp_path / "other-chain.pem"
    other_chain.write_bytes((other.directory / "certs" / "root.pem").read_bytes()
                            + (other.directory / "certs" / "issuing.pem").read_bytes())
    out = openssl("crl", "-inform", "DER", "-in", path, "-noout", "-CAfile", other_chain,
                  check=False).stdout
    assert "verify OK" not in out


def test_openssl_verify_refuses_the_revoked_certificate(tmp_path: Path, ca: StatusCa,
                                                        chain: Path) -> None:
    good = write_pem(tmp_path / "good.pem", ca.issue("Good").der)
    record = ca.issue("Revoked")
    revoked = write_pem(tmp_path / "revoked.pem", record.der)
    ca.registry.revoke(record.serial, "key_compromise")
    crl_pem = tmp_path / "crl.pem"
    openssl("crl", "-inform", "DER", "-in",
            save(tmp_path, CrlPublisher(ca.authority, ca.registry).current()),
            "-outform", "PEM", "-out", crl_pem)
    args = ("verify", "-crl_check", "-CAfile", chain, "-CRLfile", crl_pem)
    assert f"{good}: OK" in openssl(*args, good).stdout
    out = openssl(*args, revoked, check=False).stdout
    assert "certificate revoked" in out


def test_fields(ca: StatusCa) -> None:
    record = ca.issue()
    ca.registry.revoke(record.serial, "privilege_withdrawn")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    parsed = parse(CrlPublisher(ca.authority, ca.registry).current())
    tbs = parsed["tbs_cert_list"]
    issuing = ca.authority.issuing
    assert tbs["version"].native == "v2"
    assert tbs["issuer"] == issuing.subject
    assert parsed.authority_key_identifier == key_identifier(issuing.public_key)
    assert parsed["signature_algorithm"].signature_algo == "ecdsa"
    this_update = tbs["this_update"].native
    assert before <= this_update <= dt.datetime.now(dt.UTC)
    assert tbs["next_update"].native - this_update == dt.timedelta(
        hours=ca.authority.config.crl_validity_hours)
    [entry] = tbs["revoked_certificates"]
    assert entry["user_certificate"].native == record.serial
    revoked = ca.registry.get(record.serial)
    assert revoked is not None
    assert entry["revocation_date"].native == revoked.revoked_at
    assert entry.crl_reason_value.native == "privilege_withdrawn"


def test_unspecified_reason_has_no_reason_code(ca: StatusCa) -> None:
    record = ca.issue()
    ca.registry.revoke(record.serial, "unspecified")
    [entry] = parse(CrlPublisher(ca.authority, ca.registry).current())["tbs_cert_list"][
        "revoked_certificates"]
    assert entry["user_certificate"].native == record.serial
    assert entry.crl_reason_value is None  # RFC 5280 §5.3.1: SHOULD be absent


def test_nothing_revoked_no_list(tmp_path: Path, ca: StatusCa) -> None:
    ca.issue()
    der = CrlPublisher(ca.authority, ca.registry).current()
    assert parse(der)["tbs_cert_list"]["revoked_certificates"].native is None
    assert "No Revoked Certificates." in text(tmp_path, der)


def test_validity_follows_the_configuration(tmp_path: Path) -> None:
    ca = make_status_ca(tmp_path, CaConfig(crl_validity_hours=6))
    tbs = parse(CrlPublisher(ca.authority, ca.registry).current())["tbs_cert_list"]
    assert tbs["next_update"].native - tbs["this_update"].native == dt.timedelta(hours=6)


# Numbering and the schedule ---------------------------------------------------------------

def test_number_stays_when_nothing_changed_and_grows_on_revocation(ca: StatusCa) -> None:
    publisher = CrlPublisher(ca.authority, ca.registry)
    first = publisher.current()
    assert publisher.current() == first
    ca.issue()  # moves the status version, but the list of revocations is the same
    assert publisher.current() == first
    record = ca.issue()
    ca.registry.revoke(record.serial, "key_compromise")
    second = publisher.current()
    assert number(second) > number(first)
    assert [e["user_certificate"].native
            for e in parse(second)["tbs_cert_list"]["revoked_certificates"]] == [record.serial]
    assert publisher.current() == second
    another = ca.issue()
    ca.registry.revoke(another.serial, "cessation_of_operation")
    third = publisher.current()
    assert number(third) > number(second)
    assert len(parse(third)["tbs_cert_list"]["revoked_certificates"]) == 2


def test_refresh_forces_a_new_crl(ca: StatusCa) -> None:
    publisher = CrlPublisher(ca.authority, ca.registry)
    first = publisher.current()
    forced = publisher.refresh()
    assert number(forced) == number(first) + 1
    assert publisher.current() == forced


def test_regenerated_past_half_its_validity(ca: StatusCa) -> None:
    clock = Clock()
    publisher = CrlPublisher(ca.authority, ca.registry, clock=clock)
    first = publisher.current()
    half = dt.timedelta(hours=ca.authority.config.crl_validity_hours) / 2
    clock.now += half - dt.timedelta(seconds=5)
    assert publisher.current() == first
    clock.now += dt.timedelta(seconds=10)
    renewed = publisher.current()
    assert number(renewed) == number(first) + 1
    assert parse(renewed)["tbs_cert_list"]["this_update"].native == clock.now.replace(
        microsecond=0)
    issued = publisher.current_crl()
    assert issued.der == renewed
    assert issued.next_update - issued.this_update == 2 * half


def test_numbers_never_repeat_across_restarts(ca: StatusCa) -> None:
    seen = [number(CrlPublisher(ca.authority, ca.registry).current()) for _ in range(3)]
    assert seen == sorted(set(seen))
