"""The OCSP responder (ca/ocsp.py) with OpenSSL as the client: requests made by
`openssl ocsp -reqout`, answers checked by `openssl ocsp -respin` against the CA chain."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import ocsp

from ca.authority import Authority, CaConfig
from ca.ocsp import (
    INTERNAL_ERROR,
    MALFORMED_REQUEST,
    MAX_REQUEST_ENTRIES,
    MalformedOcspRequest,
    OcspResponder,
    request_from_get_path,
)
from ca.profiles import key_identifier
from tests.support.ca_status import Clock, StatusCa, make_status_ca, openssl, write_pem


@pytest.fixture
def ca(tmp_path: Path) -> StatusCa:
    return make_status_ca(tmp_path)


@pytest.fixture
def leaf(ca: StatusCa, tmp_path: Path) -> Path:
    return write_pem(tmp_path / "leaf.pem", ca.issue().der)


@pytest.fixture
def revoked_leaf(ca: StatusCa, tmp_path: Path) -> Path:
    record = ca.issue("Durand")
    ca.registry.revoke(record.serial, "key_compromise")
    return write_pem(tmp_path / "revoked.pem", record.der)


@pytest.fixture
def responder(ca: StatusCa) -> OcspResponder:
    return OcspResponder(ca.authority, ca.registry)


def make_request(tmp_path: Path, ca: StatusCa, *targets: str | Path, nonce: bool = False,
                 digest: str = "sha1", issuer: Path | None = None) -> bytes:
    """`openssl ocsp -reqout`; a target is a certificate file or a '0x..' serial."""
    args: list[str | Path] = ["ocsp", "-issuer", issuer or ca.issuing_pem, f"-{digest}"]
    for target in targets:
        args += (["-serial", target] if isinstance(target, str) else ["-cert", target])
    out = tmp_path / f"req-{secrets.token_hex(4)}.der"
    openssl(*args, "-reqout", out, *([] if nonce else ["-no_nonce"]))
    return out.read_bytes()


def check_with_openssl(tmp_path: Path, ca: StatusCa, response: bytes, *certs: Path,
                       digest: str = "sha1") -> str:
    """`openssl ocsp -respin` for these certificates, verifying against the CA chain."""
    path = tmp_path / f"resp-{secrets.token_hex(4)}.der"
    path.write_bytes(response)
    args: list[str | Path] = ["ocsp", "-respin", path, "-issuer", ca.issuing_pem,
                              f"-{digest}", "-no_nonce", "-CAfile", ca.root_pem,
                              "-verify_other", ca.issuing_pem]
    for cert in certs:
        args += ["-cert", cert]
    return openssl(*args).stdout


def parse(response: bytes) -> ocsp.OCSPResponse:
    parsed = ocsp.OCSPResponse.load(response, strict=True)
    _ = parsed.native
    # Re-encoded by asn1crypto from the parsed values, it is the same DER.
    assert ocsp.OCSPResponse.load(response).dump(force=True) == response
    return parsed


def statuses(response: bytes) -> list[str]:
    return [r["cert_status"].name for r in parse(response).response_data["responses"]]


# Status answers, checked by OpenSSL --------------------------------------------------------

def test_good_certificate(tmp_path: Path, ca: StatusCa, leaf: Path,
                          responder: OcspResponder) -> None:
    response = responder.respond(make_request(tmp_path, ca, leaf))
    out = check_with_openssl(tmp_path, ca, response, leaf)
    assert "Response verify OK" in out
    assert f"{leaf}: good" in out
    assert "WARNING" not in out  # thisUpdate/nextUpdate accepted


def test_revoked_certificate_with_time_and_reason(tmp_path: Path, ca: StatusCa,
                                                  revoked_leaf: Path,
                                                  responder: OcspResponder) -> None:
    response = responder.respond(make_request(tmp_path, ca, revoked_leaf))
    out = check_with_openssl(tmp_path, ca, response, revoked_leaf)
    assert "Response verify OK" in out
    assert f"{revoked_leaf}: revoked" in out
    assert "Reason: keyCompromise" in out
    assert "Revocation Time:" in out


def test_several_certificates_in_one_request(tmp_path: Path, ca: StatusCa, leaf: Path,
                                             revoked_leaf: Path,
                                             responder: OcspResponder) -> None:
    response = responder.respond(make_request(tmp_path, ca, leaf, revoked_leaf))
    out = check_with_openssl(tmp_path, ca, response, leaf, revoked_leaf)
    assert "Response verify OK" in out
    assert f"{leaf}: good" in out
    assert f"{revoked_leaf}: revoked" in out


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
def test_cert_id_hash_algorithms(tmp_path: Path, ca: StatusCa, leaf: Path,
                                 responder: OcspResponder, digest: str) -> None:
    request = make_request(tmp_path, ca, leaf, digest=digest)
    assert ocsp.OCSPRequest.load(request)["tbs_request"]["request_list"][0]["req_cert"][
        "hash_algorithm"]["algorithm"].native == digest
    out = check_with_openssl(tmp_path, ca, responder.respond(request), leaf, digest=digest)
    assert "Response verify OK" in out
    assert f"{leaf}: good" in out


def test_serial_never_issued_is_unknown(tmp_path: Path, ca: StatusCa,
                                        responder: OcspResponder) -> None:
    serial = "0x" + secrets.token_hex(16)
    response = responder.respond(make_request(tmp_path, ca, serial))
    path = tmp_path / "resp.der"
    path.write_bytes(response)
    out = openssl("ocsp", "-respin", path, "-issuer", ca.issuing_pem, "-serial", serial,
                  "-no_nonce", "-CAfile", ca.root_pem, "-verify_other", ca.issuing_pem).stdout
    assert "Response verify OK" in out
    assert f"{serial}: unknown" in out


def test_the_ca_service_certificates_are_good(tmp_path: Path, ca: StatusCa,
                                              responder: OcspResponder) -> None:
    # Issued at init, outside the registry; a timestamp verifier asks about the TSA's.
    tsa = ca.directory / "certs" / "tsa.pem"
    response = responder.respond(make_request(tmp_path, ca, tsa))
    out = check_with_openssl(tmp_path, ca, response, tsa)
    assert "Response verify OK" in out
    assert f"{tsa}: good" in out


def test_another_issuer_only_is_unauthorized(tmp_path: Path, ca: StatusCa, leaf: Path,
                                             responder: OcspResponder) -> None:
    other = Authority.init(tmp_path / "other-ca")
    other_issuing = other.directory / "certs" / "issuing.pem"
    # Same serial, other issuer: the issuer hashes, not the serial, decide.
    serial = hex(ca.registry.all()[0].serial)
    response = responder.respond(make_request(tmp_path, ca, serial, issuer=other_issuing))
    assert parse(response)["response_status"].native == "unauthorized"
    path = tmp_path / "resp.der"
    path.write_bytes(response)
    out = openssl("ocsp", "-respin", path, "-no_nonce", check=False).stdout
    assert "unauthorized" in out


def test_entries_of_another_issuer_are_unknown_next_to_ours(tmp_path: Path, ca: StatusCa,
                                                            leaf: Path,
                                                            responder: OcspResponder) -> None:
    other = Authority.init(tmp_path / "other-ca")
    foreign = make_request(tmp_path, ca, "0x1234",
                           issuer=other.directory / "certs" / "issuing.pem")
    ours = make_request(tmp_path, ca, leaf)
    request = combine(ours, foreign)
    assert statuses(responder.respond(request)) == ["good", "unknown"]


def combine(*requests: bytes) -> bytes:
    """One request listing the entries of several (no nonce)."""
    entries = [entry for der in requests
               for entry in ocsp.OCSPRequest.load(der)["tbs_request"]["request_list"]]
    return bytes(ocsp.OCSPRequest({"tbs_request": {"request_list": entries}}).dump())


# Response fields ---------------------------------------------------------------------------

def test_response_fields(tmp_path: Path, ca: StatusCa, leaf: Path,
                         responder: OcspResponder) -> None:
    request = make_request(tmp_path, ca, leaf)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    parsed = parse(responder.respond(request))
    assert parsed["response_status"].native == "successful"
    basic = parsed.basic_ocsp_response
    data = basic["tbs_response_data"]
    responder_cert = ca.authority.certificates["ocsp"]
    # Delegated responder: byKey, its certificate included (RFC 6960 §4.2.2.2).
    assert data["responder_id"].name == "by_key"
    assert data["responder_id"].chosen.native == key_identifier(responder_cert.public_key)
    assert [c.dump() for c in basic["certs"]] == [responder_cert.dump()]
    assert basic["signature_algorithm"].signature_algo == "ecdsa"
    single = data["responses"][0]
    assert single["cert_id"].dump() == (ocsp.OCSPRequest.load(request)["tbs_request"]
                                        ["request_list"][0]["req_cert"].dump())
    this_update = single["this_update"].native
    assert before <= this_update <= dt.datetime.now(dt.UTC)
    assert data["produced_at"].native == this_update
    assert single["next_update"].native - this_update == dt.timedelta(
        minutes=ca.authority.config.ocsp_validity_minutes)


def test_validity_follows_the_configuration(tmp_path: Path) -> None:
    ca = make_status_ca(tmp_path, CaConfig(ocsp_validity_minutes=7))
    responder = OcspResponder(ca.authority, ca.registry)
    leaf = write_pem(tmp_path / "leaf.pem", ca.issue().der)
    single = parse(responder.respond(make_request(tmp_path, ca, leaf))).response_data[
        "responses"][0]
    assert single["next_update"].native - single["this_update"].native == dt.timedelta(
        minutes=7)


# Nonce (RFC 8954) --------------------------------------------------------------------------

def test_nonce_is_echoed_and_openssl_checks_it(tmp_path: Path, ca: StatusCa, leaf: Path,
                                               responder: OcspResponder) -> None:
    request = make_request(tmp_path, ca, leaf, nonce=True)
    response = responder.respond(request)
    assert parse(response).nonce_value.native == ocsp.OCSPRequest.load(request).nonce_value.native
    (tmp_path / "req.der").write_bytes(request)
    (tmp_path / "resp.der").write_bytes(response)
    chain: list[str | Path] = ["-CAfile", ca.root_pem, "-verify_other", ca.issuing_pem]
    out = openssl("ocsp", "-reqin", tmp_path / "req.der", "-respin", tmp_path / "resp.der",
                  *chain).stdout
    assert "Response verify OK" in out
    assert "Nonce Verify error" not in out
    # Control: the same response does not answer another request's nonce.
    (tmp_path / "other.der").write_bytes(make_request(tmp_path, ca, leaf, nonce=True))
    out = openssl("ocsp", "-reqin", tmp_path / "other.der", "-respin", tmp_path / "resp.der",
                  *chain, check=False).stdout
    assert "Nonce Verify error" in out


def test_no_nonce_no_nonce_extension(tmp_path: Path, ca: StatusCa, leaf: Path,
                                     responder: OcspResponder) -> None:
    response = responder.respond(make_request(tmp_path, ca, leaf))
    assert parse(response).nonce_value is None


@pytest.mark.parametrize("length", [0, 33, 200])
def test_nonce_of_a_bad_length_is_malformed(tmp_path: Path, ca: StatusCa, leaf: Path,
                                            responder: OcspResponder, length: int) -> None:
    request = with_extensions(make_request(tmp_path, ca, leaf),
                              [nonce_extension(secrets.token_bytes(length))])
    assert responder.respond(request) == MALFORMED_REQUEST


@pytest.mark.parametrize("length", [1, 32])
def test_nonce_lengths_at_the_limits_are_echoed(tmp_path: Path, ca: StatusCa, leaf: Path,
                                                responder: OcspResponder, length: int) -> None:
    nonce = secrets.token_bytes(length)
    request = with_extensions(make_request(tmp_path, ca, leaf), [nonce_extension(nonce)])
    assert parse(responder.respond(request)).nonce_value.native == nonce


def nonce_extension(nonce: bytes) -> dict[str, Any]:
    return {"extn_id": "nonce", "critical": False, "extn_value": ocsp.OctetString(nonce)}


def with_extensions(request: bytes, extensions: list[Any]) -> bytes:
    tbs = ocsp.OCSPRequest.load(request)["tbs_request"]
    return bytes(ocsp.OCSPRequest({"tbs_request": {
        "request_list": tbs["request_list"], "request_extensions": extensions}}).dump())


# Malformed requests --------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"", b"\x00", b"garbage", b"\x30\x03\x02\x01\x01",
                                     b"\x30\x80\x00\x00", secrets.token_bytes(300)])
def test_garbage_is_malformed_request(tmp_path: Path, responder: OcspResponder,
                                      garbage: bytes) -> None:
    response = responder.respond(garbage)
    assert response == MALFORMED_REQUEST
    assert parse(response)["response_status"].native == "malformed_request"
    path = tmp_path / "resp.der"
    path.write_bytes(response)
    assert "malformedrequest" in openssl("ocsp", "-respin", path, check=False).stdout


def test_trailing_bytes_are_malformed(tmp_path: Path, ca: StatusCa, leaf: Path,
                                      responder: OcspResponder) -> None:
    assert responder.respond(make_request(tmp_path, ca, leaf) + b"\x00") == MALFORMED_REQUEST


def test_entry_count_limit(tmp_path: Path, ca: StatusCa, responder: OcspResponder) -> None:
    one = make_request(tmp_path, ca, "0x01")
    at_limit = combine(*[one] * MAX_REQUEST_ENTRIES)
    assert statuses(responder.respond(at_limit)) == ["unknown"] * MAX_REQUEST_ENTRIES
    assert responder.respond(combine(*[one] * (MAX_REQUEST_ENTRIES + 1))) == MALFORMED_REQUEST
    empty = bytes(ocsp.OCSPRequest({"tbs_request": {"request_list": []}}).dump())
    assert responder.respond(empty) == MALFORMED_REQUEST


def test_unknown_critical_extension_is_malformed(tmp_path: Path, ca: StatusCa, leaf: Path,
                                                 responder: OcspResponder) -> None:
    request = make_request(tmp_path, ca, leaf)
    unknown = {"extn_id": "1.2.3.4", "critical": True, "extn_value": b"\x05\x00"}
    assert responder.respond(with_extensions(request, [unknown])) == MALFORMED_REQUEST
    unknown["critical"] = False  # ignored when not critical (RFC 6960 §4.4)
    assert statuses(responder.respond(with_extensions(request, [unknown]))) == ["good"]


# GET (RFC 6960 Appendix A.1) ---------------------------------------------------------------

def test_get_path_round_trip(tmp_path: Path, ca: StatusCa, leaf: Path,
                             responder: OcspResponder) -> None:
    request = make_request(tmp_path, ca, leaf, nonce=True)
    encoded = base64.b64encode(request).decode()
    segment = urllib.parse.quote(encoded, safe="")
    assert request_from_get_path(segment) == request
    assert request_from_get_path(encoded) == request  # a client that did not escape
    unpadded = urllib.parse.quote(encoded.rstrip("="), safe="")
    assert request_from_get_path(unpadded) == request  # padding dropped
    assert statuses(responder.respond_get(segment)) == ["good"]


@pytest.mark.parametrize("segment", ["", "%%%", "not base64!", "A", "@@@@"])
def test_get_path_garbage(responder: OcspResponder, segment: str) -> None:
    with pytest.raises(MalformedOcspRequest):
        request_from_get_path(segment)
    assert responder.respond_get(segment) == MALFORMED_REQUEST


# The cache: until the status changes ---------------------------------------------------------

def test_cached_until_the_status_changes(tmp_path: Path, ca: StatusCa) -> None:
    responder = OcspResponder(ca.authority, ca.registry)
    record = ca.issue()
    leaf = write_pem(tmp_path / "leaf.pem", record.der)
    request = make_request(tmp_path, ca, leaf)
    first = responder.respond(request)
    assert responder.respond(request) == first  # ECDSA is randomised: same bytes, no signing
    ca.issue("Other")  # another certificate's status moves the version, not this one's
    assert responder.respond(request) == first
    ca.registry.revoke(record.serial, "superseded")
    after = responder.respond(request)
    assert after != first
    assert statuses(after) == ["revoked"]
    assert responder.respond(request) == after


def test_unknown_serial_becomes_good_once_issued(tmp_path: Path, ca: StatusCa) -> None:
    responder = OcspResponder(ca.authority, ca.registry)
    serial = secrets.randbits(100) | 1 << 99
    request = make_request(tmp_path, ca, hex(serial))
    assert statuses(responder.respond(request)) == ["unknown"]
    issued = ca.issue(serial=serial)
    assert issued.serial == serial
    assert statuses(responder.respond(request)) == ["good"]


def test_cached_response_is_renewed_past_half_its_validity(tmp_path: Path, ca: StatusCa,
                                                           leaf: Path) -> None:
    clock = Clock()
    responder = OcspResponder(ca.authority, ca.registry, clock=clock)
    request = make_request(tmp_path, ca, leaf)
    first = responder.respond(request)
    half = dt.timedelta(minutes=ca.authority.config.ocsp_validity_minutes) / 2
    clock.now += half - dt.timedelta(seconds=5)
    assert responder.respond(request) == first
    clock.now += dt.timedelta(seconds=10)
    renewed = responder.respond(request)
    assert renewed != first
    this_update = parse(renewed).response_data["responses"][0]["this_update"].native
    assert this_update == clock.now.replace(microsecond=0)


def test_nonce_requests_are_never_cached(tmp_path: Path, ca: StatusCa, leaf: Path,
                                         responder: OcspResponder) -> None:
    request = make_request(tmp_path, ca, leaf, nonce=True)
    assert responder.respond(request) != responder.respond(request)
    assert responder.cache_size() == 0


def test_cache_is_bounded(tmp_path: Path, ca: StatusCa) -> None:
    responder = OcspResponder(ca.authority, ca.registry, max_cache_entries=3)
    for serial in range(1, 6):
        responder.respond(make_request(tmp_path, ca, hex(serial)))
    assert responder.cache_size() == 3


def test_registry_failure_is_internal_error_not_an_exception(tmp_path: Path, ca: StatusCa,
                                                            leaf: Path,
                                                            responder: OcspResponder) -> None:
    request = make_request(tmp_path, ca, leaf)
    ca.registry.close()  # the database is gone
    response = responder.respond(request)
    assert response == INTERNAL_ERROR
    assert parse(response)["response_status"].native == "internal_error"
