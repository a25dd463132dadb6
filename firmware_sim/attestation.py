"""Key attestation: proof that a slot's key was generated on this card.

The chain follows the shape field PIV tokens use: a manufacturer root signs a
per-device attestation certificate at personalisation (its key stays on the
card, slot F9); ATTEST makes a certificate for a slot's public key signed by
that device key. A CA that trusts the manufacturer root can then accept a key
as generated on the device (ETSI EN 319 411-2, QSCD key generation).

The simulator's manufacturer root lives in a directory of its own (created on
first use), so each installation has its own root and nobody ships its key.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware_sim.keys import PrivateKey
from ground.files import write_atomically

# A private OID arc under 2.25 (ITU-T X.667 UUID arc), owned by this project.
QSIGN_SIM_ARC = "2.25.35530359360331577736610611644625683634"


class AttestationOid:
    """Extensions of a slot attestation certificate (all non-critical)."""

    FIRMWARE_VERSION = x509.ObjectIdentifier(QSIGN_SIM_ARC + ".1")  # OCTET STRING, 3 bytes
    SERIAL_NUMBER = x509.ObjectIdentifier(QSIGN_SIM_ARC + ".2")  # INTEGER
    POLICY = x509.ObjectIdentifier(QSIGN_SIM_ARC + ".3")  # OCTET STRING: PIN policy, touch
    KEY_ORIGIN = x509.ObjectIdentifier(QSIGN_SIM_ARC + ".4")  # ENUMERATED: 1 generated
    SLOT = x509.ObjectIdentifier(QSIGN_SIM_ARC + ".5")  # OCTET STRING, 1 byte


class KeyOriginValue(core.Enumerated):  # type: ignore[misc]
    _map = {1: "generated", 2: "imported"}  # noqa: RUF012 - asn1crypto's class-level map


MANUFACTURER_ENV = "QSIGN_SIM_MANUFACTURER"
ROOT_CERT_FILE = "manufacturer-root.pem"
ROOT_KEY_FILE = "manufacturer-root.key"
_DEVICE_VALIDITY = dt.timedelta(days=365 * 20)


def default_manufacturer_dir() -> Path:
    env = os.environ.get(MANUFACTURER_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "qsign" / "sim-manufacturer"


@dataclass(frozen=True)
class Manufacturer:
    """The simulated card maker: its root CA signs each card's attestation certificate."""

    directory: Path
    root_key: ec.EllipticCurvePrivateKey
    root_certificate: x509.Certificate

    @classmethod
    def open(cls, directory: Path | None = None) -> Manufacturer:
        """Load the root from `directory`, creating it the first time."""
        directory = directory or default_manufacturer_dir()
        cert_path, key_path = directory / ROOT_CERT_FILE, directory / ROOT_KEY_FILE
        if not cert_path.exists():
            _create_root(directory)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: not an EC private key")
        return cls(directory, key, x509.load_pem_x509_certificate(cert_path.read_bytes()))

    def issue_device_certificate(self, public_key: ec.EllipticCurvePublicKey, serial: int
                                 ) -> x509.Certificate:
        """The per-card attestation certificate (slot F9), a CA for slot attestations only."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qsign simulated cards"),
            x509.NameAttribute(NameOID.COMMON_NAME, "qsign-sim PIV Attestation"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(serial)),
        ])
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.root_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + _DEVICE_VALIDITY,
                                 self.root_certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA384())
        )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


def _create_root(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qsign simulated cards"),
        x509.NameAttribute(NameOID.COMMON_NAME, "qsign-sim Manufacturer Root CA"),
    ])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(directory / ROOT_KEY_FILE, key_pem, 0o600)
    write_atomically(directory / ROOT_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM),
                     0o644)




def attest_slot(
    *,
    slot: int,
    slot_key: PrivateKey,
    device_key: PrivateKey,
    device_certificate: x509.Certificate,
    card_serial: int,
    firmware_version: tuple[int, int, int],
    pin_policy: int,
    touch_policy: int,
) -> x509.Certificate:
    """ATTEST: a certificate for `slot_key`'s public key, signed by the device key.

    Cards have no clock: the validity is the device certificate's, as on field tokens.
    """
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"qsign-sim PIV Attestation {slot:02X}"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, str(card_serial)),
    ])
    public_key = slot_key.public_key()
    ext = x509.UnrecognizedExtension
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(device_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(device_certificate.not_valid_before_utc)
        .not_valid_after(device_certificate.not_valid_after_utc)
        .add_extension(ext(AttestationOid.FIRMWARE_VERSION,
                           core.OctetString(bytes(firmware_version)).dump()), critical=False)
        .add_extension(ext(AttestationOid.SERIAL_NUMBER, core.Integer(card_serial).dump()),
                       critical=False)
        .add_extension(ext(AttestationOid.POLICY,
                           core.OctetString(bytes([pin_policy, touch_policy])).dump()),
                       critical=False)
        .add_extension(ext(AttestationOid.KEY_ORIGIN, KeyOriginValue("generated").dump()),
                       critical=False)
        .add_extension(ext(AttestationOid.SLOT, core.OctetString(bytes([slot])).dump()),
                       critical=False)
        .sign(device_key, hashes.SHA256())
    )
