"""Hostile OCSP requests: whatever bytes arrive, the responder answers with a DER
OCSPResponse that parses, and a successful one is signed by the responder; it never
raises. Seeds come from OpenSSL's client, then are mutated or rebuilt field by field."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asn1crypto import ocsp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.ocsp import MAX_REQUEST_ENTRIES, OcspResponder
from tests.support.ca_status import StatusCa, make_status_ca, write_pem

EXAMPLES = {"arbitrary_bytes": 800, "mutated": 1000, "structured": 600}
assert sum(EXAMPLES.values()) >= 2000

STATUSES = {"successful", "malformed_request", "internal_error", "try_later",
            "sign_required", "unauthorized"}


def fuzz_settings(name: str) -> settings:
    return settings(max_examples=EXAMPLES[name], deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Target:
    ca: StatusCa
    responder: OcspResponder
    seeds: list[bytes]
    good_cert_id: Any  # an ocsp.CertId of an issued certificate


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("ocsp-fuzz")
    ca = make_status_ca(tmp)
    good = str(write_pem(tmp / "good.pem", ca.issue().der))
    revoked_record = ca.issue("Revoked")
    ca.registry.revoke(revoked_record.serial, "key_compromise")
    revoked = str(write_pem(tmp / "revoked.pem", revoked_record.der))
    seeds = []
    for i, extra in enumerate([["-cert", good], ["-cert", revoked, "-nonce"],
                               ["-sha256", "-cert", good, "-cert", revoked],
                               ["-serial", "0x1234", "-no_nonce"],
                               ["-cert", good, "-no_nonce"]]):
        out = tmp / f"seed{i}.der"
        subprocess.run(["openssl", "ocsp", "-issuer", str(ca.issuing_pem),
                        *extra,
                        "-reqout", str(out)], check=True, capture_output=True, timeout=60)
        seeds.append(out.read_bytes())
    good_cert_id = ocsp.OCSPRequest.load(seeds[0])["tbs_request"]["request_list"][0][
        "req_cert"]
    yield Target(ca, OcspResponder(ca.authority, ca.registry), seeds, good_cert_id)
    ca.registry.close()


def check(target: Target, request: bytes) -> ocsp.OCSPResponse:
    response = target.responder.respond(request)
    assert isinstance(response, bytes)
    parsed = ocsp.OCSPResponse.load(response, strict=True)
    _ = parsed.native
    status = parsed["response_status"].native
    assert status in STATUSES
    assert status != "internal_error"
    if status == "successful":
        basic = parsed.basic_ocsp_response
        responder_cert = target.ca.authority.certificates["ocsp"]
        public_key = load_der_public_key(responder_cert.public_key.dump())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(basic["signature"].native, basic["tbs_response_data"].dump(),
                          ec.ECDSA(hashes.SHA384()))
    return parsed


@fuzz_settings("arbitrary_bytes")
@given(raw=st.one_of(st.binary(max_size=400),
                     st.builds(lambda body: b"\x30" + bytes([len(body)]) + body,
                               st.binary(max_size=127))))
def test_arbitrary_bytes(target: Target, raw: bytes) -> None:
    check(target, raw)


# One edit: (operation, position as a fraction of the length, a byte, a length).
EDITS = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate",
                                   "length"]),
                  st.floats(0, 1, allow_nan=False), st.integers(0, 255), st.integers(1, 16))


def mutate(seed: bytes, edits: list[tuple[str, float, int, int]]) -> bytes:
    data = bytearray(seed)
    for operation, where, byte, size in edits:
        if not data:
            data.append(byte)
            continue
        at = min(int(where * len(data)), len(data) - 1)
        if operation == "flip":
            data[at] ^= 1 << (byte % 8)
        elif operation == "set":
            data[at] = byte
        elif operation == "insert":
            data[at:at] = bytes([byte]) * size
        elif operation == "delete":
            del data[at:at + size]
        elif operation == "truncate":
            del data[at:]
        elif operation == "duplicate":
            data[at:at] = data[at:at + size]
        else:  # a length byte: the usual way parsers go wrong
            data[at] = byte | 0x80 if byte & 1 else byte
    return bytes(data)


@fuzz_settings("mutated")
@given(index=st.integers(0, 4), edits=st.lists(EDITS, min_size=1, max_size=4))
def test_mutated_openssl_requests(target: Target, index: int,
                                  edits: list[tuple[str, float, int, int]]) -> None:
    check(target, mutate(target.seeds[index], edits))


@st.composite
def cert_ids(draw: st.DrawFn, good: Any) -> Any:
    """CertIDs near a real one: other serials, hashes, algorithms."""
    algorithm = draw(st.sampled_from(["sha1", "sha256", "sha384", "sha512", "md5",
                                      "1.2.3.4"]))
    serial = draw(st.one_of(st.just(good["serial_number"].native),
                            st.integers(-(2 ** 200), 2 ** 200)))
    name_hash = draw(st.one_of(st.just(good["issuer_name_hash"].native),
                               st.binary(max_size=70)))
    key_hash = draw(st.one_of(st.just(good["issuer_key_hash"].native),
                              st.binary(max_size=70)))
    return {"hash_algorithm": {"algorithm": algorithm}, "issuer_name_hash": name_hash,
            "issuer_key_hash": key_hash, "serial_number": serial}


# An extension the responder does not know, and one it knows and ignores.
EXTRA_EXTENSIONS: dict[str, Any] = {
    "1.2.3.4": b"\x30\x00",
    "acceptable_responses": ocsp.AcceptableResponses(["basic_ocsp_response"]),
}


@fuzz_settings("structured")
@given(data=st.data(), count=st.integers(0, MAX_REQUEST_ENTRIES + 2),
       nonce=st.one_of(st.none(), st.binary(max_size=40)), critical=st.booleans(),
       extra_oid=st.one_of(st.none(), st.sampled_from(sorted(EXTRA_EXTENSIONS))))
def test_structured_requests(target: Target, data: st.DataObject, count: int,
                             nonce: bytes | None, critical: bool, extra_oid: str | None) -> None:
    entries = [{"req_cert": data.draw(cert_ids(target.good_cert_id))} for _ in range(count)]
    extensions: list[dict[str, Any]] = []
    if nonce is not None:
        extensions.append({"extn_id": "nonce", "critical": critical,
                           "extn_value": ocsp.OctetString(nonce)})
    if extra_oid is not None:
        extensions.append({"extn_id": extra_oid, "critical": critical,
                           "extn_value": EXTRA_EXTENSIONS[extra_oid]})
    tbs: dict[str, Any] = {"request_list": entries}
    if extensions:
        tbs["request_extensions"] = extensions
    request = bytes(ocsp.OCSPRequest({"tbs_request": tbs}).dump())
    parsed = check(target, request)
    if parsed["response_status"].native == "successful":
        assert len(parsed.response_data["responses"]) == count
        if nonce is not None:
            assert parsed.nonce_value.native == nonce
