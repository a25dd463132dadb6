"""A throw-away CA with a registry and issued qualified certificates, for the status
services' tests (OCSP, CRL), and helpers to drive the `openssl` command line."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import pem, x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ca.authority import Authority, CaConfig
from ca.enrolment import issue_qualified
from ca.profiles import (
    natural_person_name,
    random_serial,
    spki_sha256,
)
from ca.registry import CertificateRecord, Registry


@dataclass
class StatusCa:
    directory: Path
    authority: Authority
    registry: Registry

    @property
    def issuing_pem(self) -> Path:
        return self.directory / "certs" / "issuing.pem"

    @property
    def root_pem(self) -> Path:
        return self.directory / "certs" / "root.pem"

    def issue(self, surname: str = "Martin", *, serial: int | None = None
              ) -> CertificateRecord:
        """A qualified certificate for a fresh P-256 key, through the registry (with a
        random serial unless `serial` is given)."""
        der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        public_key = asn1_keys.PublicKeyInfo.load(der)
        subject = natural_person_name(given_name="Alice", surname=surname,
                                      serial_number=f"IDCFR-{secrets.token_hex(4)}",
                                      country="FR")

        def build(serial: int) -> x509.Certificate:
            return issue_qualified(self.authority, serial, subject, public_key)

        return self.registry.issue(build, new_serial=random_serial if serial is None
                                   else lambda: serial,
                                   evidence_id=secrets.token_hex(16),
                                   spki_sha256=spki_sha256(public_key))


def make_status_ca(tmp_path: Path, config: CaConfig | None = None) -> StatusCa:
    directory = tmp_path / "ca"
    authority = Authority.init(directory, config)
    return StatusCa(directory, authority, Registry.open(None, directory))


def write_pem(path: Path, certificate_der: bytes) -> Path:
    path.write_bytes(pem.armor("CERTIFICATE", certificate_der))
    return path


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `openssl`; stdout and stderr together in `.stdout`."""
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                            timeout=60)
    result.stdout += result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{result.stdout}")
    return result


class Clock:
    """A settable wall clock (the `clock=` of the OCSP responder and the CRL publisher)."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now
