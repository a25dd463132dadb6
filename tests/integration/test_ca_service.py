"""`qsign ca serve` as a real HTTP service on loopback, on SQLite and on PostgreSQL:
enrolment with a key made on the simulated card, then OpenSSL as the relying party
(OCSP good and revoked, the CRL, timestamps)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.tokens.model import KeyType
from agent.tokens.piv import PivToken
from firmware_sim.attestation import Manufacturer
from firmware_sim.card import InProcessConnection
from tests.support.ca_fixtures import b64, card_csr
from tests.support.ca_process import RunningCa, start_ca
from tests.support.cli import run_qsign


@pytest.fixture
def running_ca(tmp_path: Path, manufacturer: Manufacturer, database_url: str
               ) -> Iterator[RunningCa]:
    ca = start_ca(tmp_path, manufacturer, database_url=database_url)
    yield ca
    ca.stop()


def _enrol(ca: RunningCa, connection: InProcessConnection, tmp_path: Path
           ) -> tuple[int, dict[str, Any]]:
    token = PivToken(connection)
    spki = token.generate_key("9C", KeyType.EC_P256)
    body = {"csr": b64(card_csr(token, "9C", spki, "123456")),
            "attestation": [b64(d) for d in token.attest("9C")],
            "evidence": ca.identity.evidence(hashlib.sha256(spki).hexdigest())}
    status, reply = ca.post("/v1/enrol", json.dumps(body).encode(), "application/json")
    return status, json.loads(reply)


def _openssl(*args: str) -> str:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_enrol_then_ocsp_crl_and_revocation(running_ca: RunningCa,
                                            connection: InProcessConnection,
                                            tmp_path: Path) -> None:
    status, issued = _enrol(running_ca, connection, tmp_path)
    assert status == 201, issued
    leaf = tmp_path / "leaf.der"
    leaf.write_bytes(base64.b64decode(issued["certificate"]))
    leaf_pem = tmp_path / "leaf.pem"
    subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(leaf), "-out",
                    str(leaf_pem)], check=True)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(running_ca.pem("issuing").read_bytes() + running_ca.pem("root").read_bytes())

    def ocsp_status() -> str:
        return _openssl("ocsp", "-issuer", str(running_ca.pem("issuing")), "-cert",
                        str(leaf_pem), "-url", running_ca.base + "/ocsp", "-CAfile",
                        str(chain))

    first = ocsp_status()
    assert "Response verify OK" in first and ": good" in first, first

    listing = run_qsign("ca", "list", "--dir", str(running_ca.directory), "--db",
                        running_ca.database_url)
    assert issued["serial"] in listing.stdout and "good" in listing.stdout

    token = (running_ca.directory / "admin.token").read_text().strip()
    status, _ = running_ca.post(f"/v1/certificates/{issued['serial']}/revoke",
                                b'{"reason": "key_compromise"}', "application/json")
    assert status == 401
    status, reply = running_ca.post(f"/v1/certificates/{issued['serial']}/revoke",
                                    b'{"reason": "key_compromise"}', "application/json",
                                    {"Authorization": f"Bearer {token}"})
    assert status == 200, reply
    second = ocsp_status()
    assert "Response verify OK" in second and ": revoked" in second, second

    status, crl = running_ca.get("/crl")
    assert status == 200
    (tmp_path / "crl.der").write_bytes(crl)
    text = _openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout",
                    "-text")
    assert issued["serial"].upper().lstrip("0") in text.replace(":", "").upper()
    assert "Key Compromise" in text


def test_timestamps_verify_with_openssl(running_ca: RunningCa, tmp_path: Path) -> None:
    data = tmp_path / "document"
    data.write_bytes(os.urandom(2048))
    query = tmp_path / "req.tsq"
    subprocess.run(["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert",
                    "-out", str(query)], check=True, capture_output=True)
    status, reply = running_ca.post("/tsa", query.read_bytes(), "application/timestamp-query")
    assert status == 200
    (tmp_path / "resp.tsr").write_bytes(reply)
    out = _openssl("ts", "-verify", "-data", str(data), "-in", str(tmp_path / "resp.tsr"),
                   "-CAfile", str(running_ca.pem("root")), "-untrusted",
                   str(running_ca.pem("issuing")))
    assert "Verification: OK" in out, out


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"{}", b'{"csr": 1, "attestation": [], "evidence": ""}',
    b'{"csr": "AAAA", "attestation": ["AAAA", "AAAA"], "evidence": "a.b.c"}',
    b'{"csr": "AAAA", "attestation": ["AAAA", "AAAA"], "evidence": "a.b.c", "x": 1}',
    json.dumps({"csr": "A" * 200_000}).encode(),
    # SECURITY #46: deep nesting under the 64 KiB body cap was a RecursionError, a 500
    b"[" * 30_000 + b"]" * 30_000,
    b'{"csr": ' * 6_000 + b"1" + b"}" * 6_000,
])
def test_malformed_enrolment_bodies_get_typed_4xx(running_ca: RunningCa, body: bytes) -> None:
    status, reply = running_ca.post("/v1/enrol", body, "application/json")
    assert 400 <= status < 500, (status, reply)
    error = json.loads(reply)
    assert error["error"] and error["message"]


def test_openapi_document(running_ca: RunningCa) -> None:
    status, body = running_ca.get("/openapi.json")
    assert status == 200
    document = json.loads(body)
    assert document["openapi"].startswith("3.")
    assert "/v1/enrol" in document["paths"]


_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
              st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["csr", "attestation", "evidence", "x"]), children, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_JSONISH)
def test_random_enrolment_bodies_never_get_a_500(running_ca: RunningCa, body: object) -> None:
    status, reply = running_ca.post("/v1/enrol", json.dumps(body).encode(), "application/json")
    assert 400 <= status < 500, (status, reply)
    assert json.loads(reply)["error"]
