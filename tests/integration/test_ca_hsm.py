"""The CA with its keys in a PKCS#11 token (SoftHSM2): no key file is ever written, and
what the token signs verifies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509 as cx509

from ca.authority import Authority
from ca.profiles import Validity, natural_person_name, qualified_certificate, random_serial
from ca.tsa import make_request
from tests.conftest import SoftHsm


def test_ca_keys_in_softhsm(softhsm: SoftHsm, tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    result = subprocess.run(
        [sys.executable, "-m", "qsign", "ca", "init", "--dir", str(directory),
         "--pkcs11-module", str(softhsm.module), "--token-label", softhsm.label,
         "--pin", softhsm.pin], capture_output=True, text=True, timeout=120,
        env={**os.environ, "SOFTHSM2_CONF": str(softhsm.conf)})
    assert result.returncode == 0, result.stderr
    assert "PKCS#11 token" in result.stdout
    assert not list((directory / "keys").iterdir()), "a key file was written"
    assert (directory / "hsm.pin").stat().st_mode & 0o777 == 0o600

    authority = Authority.load(directory)
    assert authority.config.key_store == "pkcs11"
    root = cx509.load_der_x509_certificate(authority.root.dump())
    issuing = cx509.load_der_x509_certificate(authority.issuing.dump())
    issuing.verify_directly_issued_by(root)
    leaf = qualified_certificate(
        serial=random_serial(), subject=natural_person_name(
            given_name="Grace", surname="Hopper", serial_number="PNOUS-0001", country="US"),
        public_key=authority.keys["ocsp"].public_key_info, issuer=authority.issuing,
        issuer_key=authority.keys["issuing"], validity=Validity.starting_now(30),
        points=authority.config.points)
    cx509.load_der_x509_certificate(leaf.dump()).verify_directly_issued_by(issuing)

    from ca.tsa import TimestampAuthority

    data = tmp_path / "data"
    data.write_bytes(b"timestamped by a key in an HSM")
    (tmp_path / "resp.tsr").write_bytes(
        TimestampAuthority(authority).respond(make_request(data.read_bytes())))
    out = subprocess.run(["openssl", "ts", "-verify", "-data", str(data), "-in",
                          str(tmp_path / "resp.tsr"), "-CAfile",
                          str(directory / "certs" / "root.pem"), "-untrusted",
                          str(directory / "certs" / "issuing.pem")],
                         capture_output=True, text=True, timeout=60)
    assert "Verification: OK" in out.stdout + out.stderr, out.stdout + out.stderr
