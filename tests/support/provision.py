"""Provisioning a simulated card through the real stack, as a card management
system does before handing a card out: management key, keys generated on the
card, a certificate per slot (OpenSC only shows keys whose slot has one).
APDU framing comes from `piv_apdus`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import piv_apdus as piv


class PyscardConnection:
    """A pyscard card connection as a `piv_apdus.Connection`."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw1, sw2 = self.connection.transmit(list(apdu))
        return bytes(data), (sw1 << 8) | sw2


class CertIssuer:
    """A throwaway CA that certifies card keys so PKCS#11 middleware shows them."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qsign test issuer")])

    def root_certificate(self) -> bytes:
        """The issuer's own self-signed CA certificate (DER), for validators' trust."""
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        ).public_bytes(serialization.Encoding.DER)

    def certify(self, public_key: piv.PublicKey, common_name: str) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )


def provision(connection: piv.Connection, slot: int, algorithm: int, issuer: CertIssuer
              ) -> x509.Certificate:
    """SELECT, authenticate, generate a key in `slot`, store a certificate for it."""
    piv.expect_ok(connection, piv.select())
    assert piv.authenticate_management(connection) == piv.SW_OK
    template = piv.expect_ok(connection, piv.generate(slot, algorithm))
    public_key = piv.public_key_from_template(template, algorithm)
    certificate = issuer.certify(public_key, f"qsign test {slot:02X}")
    der = certificate.public_bytes(serialization.Encoding.DER)
    piv.expect_ok(connection, piv.put_certificate(slot, der).chained())
    return certificate
