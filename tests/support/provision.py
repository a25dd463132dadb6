"""Host-side provisioning of a simulated card over any `transmit`: what a card
management system does before handing a card out (management key, key
generation on the card, a certificate in the slot)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.x509.oid import NameOID

from qsign.iso7816 import parse_single, parse_tlv_dict, tlv

Transmit = Callable[[bytes], tuple[bytes, int]]
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
PIV_AID = bytes.fromhex("A000000308000010000100")
CERT_TAGS = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
ALG_P256, ALG_P384, ALG_RSA2048 = 0x11, 0x14, 0x07


class ApduFailed(AssertionError):
    def __init__(self, what: str, sw: int) -> None:
        super().__init__(f"{what}: SW {sw:04X}")
        self.sw = sw


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """Encode a short (or, when needed, extended) command APDU."""
    header = bytes([cla, ins, p1, p2])
    extended = len(data) > 255 or (le is not None and le > 256)
    body = b""
    if data:
        body += (b"\x00" + len(data).to_bytes(2, "big")) if extended else bytes([len(data)])
        body += data
    if le is not None:
        if extended:
            body += (b"" if data else b"\x00") + (le % 65536).to_bytes(2, "big")
        else:
            body += bytes([le % 256])
    return header + body


def pyscard_transmit(connection: Any) -> Transmit:
    """Adapt a pyscard connection to `Transmit`; follows 61XX with GET RESPONSE."""

    def raw(command: bytes) -> tuple[bytes, int]:
        data, sw1, sw2 = connection.transmit(list(command))
        return bytes(data), (sw1 << 8) | sw2

    return following_responses(raw)


def following_responses(transmit: Transmit) -> Transmit:
    """Collect a chained response (61XX, then GET RESPONSE) into one, as hosts do."""

    def wrapped(command: bytes) -> tuple[bytes, int]:
        out, sw = transmit(command)
        while sw >> 8 == 0x61:
            data, sw = transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
            out += data
        return out, sw

    return wrapped


def check(transmit: Transmit, command: bytes, what: str) -> bytes:
    data, sw = transmit(command)
    if sw != 0x9000:
        raise ApduFailed(what, sw)
    return data


def select(transmit: Transmit) -> bytes:
    return check(transmit, apdu(0x00, 0xA4, 0x04, 0x00, PIV_AID, 0), "SELECT")


def authenticate_management(transmit: Transmit, key: bytes = DEFAULT_MANAGEMENT_KEY) -> None:
    """Mutual authentication with the 3DES card management key (SP 800-73-4 App. A.2)."""
    cipher = Cipher(TripleDES(key), modes.ECB())  # noqa: S305 - single blocks, as PIV specifies
    reply = check(transmit, apdu(0x00, 0x87, 0x03, 0x9B, tlv(0x7C, tlv(0x80)), 0), "witness")
    witness_enc = parse_tlv_dict(parse_single(reply, 0x7C))[0x80]
    dec = cipher.decryptor()
    witness = dec.update(witness_enc) + dec.finalize()
    challenge = os.urandom(8)
    reply = check(transmit, apdu(0x00, 0x87, 0x03, 0x9B,
                                 tlv(0x7C, tlv(0x80, witness) + tlv(0x81, challenge)), 0),
                  "mutual authentication")
    enc = cipher.encryptor()
    expected = enc.update(challenge) + enc.finalize()
    if parse_tlv_dict(parse_single(reply, 0x7C))[0x82] != expected:
        raise AssertionError("card did not prove knowledge of the management key")


def generate(transmit: Transmit, slot: int, algorithm: int
             ) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    reply = check(transmit, apdu(0x00, 0x47, 0x00, slot,
                                 tlv(0xAC, tlv(0x80, bytes([algorithm]))), 0), "GENERATE")
    return public_key_from_template(reply)


def public_key_from_template(template: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    items = parse_tlv_dict(parse_single(template, 0x7F49))
    if 0x86 in items:
        point = items[0x86]
        curve: ec.EllipticCurve = ec.SECP256R1() if len(point) == 65 else ec.SECP384R1()
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    numbers = rsa.RSAPublicNumbers(int.from_bytes(items[0x82], "big"),
                                   int.from_bytes(items[0x81], "big"))
    return numbers.public_key()


def put_certificate(transmit: Transmit, slot: int, certificate: x509.Certificate) -> None:
    der = certificate.public_bytes(serialization.Encoding.DER)
    content = tlv(0x70, der) + tlv(0x71, b"\x00") + tlv(0xFE)
    data = tlv(0x5C, CERT_TAGS[slot].to_bytes(3, "big")) + tlv(0x53, content)
    # Command chaining in 255-byte pieces (ISO 7816-4 §5.3.3), as hosts do.
    pieces = [data[i:i + 255] for i in range(0, len(data), 255)]
    for i, piece in enumerate(pieces):
        cla = 0x00 if i == len(pieces) - 1 else 0x10
        check(transmit, apdu(cla, 0xDB, 0x3F, 0xFF, piece), "PUT DATA")


class CertIssuer:
    """A throwaway CA that certifies card keys so PKCS#11 middleware shows them."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qsign test issuer")])

    def certify(self, public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
                common_name: str) -> x509.Certificate:
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


def provision(transmit: Transmit, slot: int, algorithm: int, issuer: CertIssuer
              ) -> x509.Certificate:
    """SELECT, authenticate, generate a key in `slot`, store a certificate for it."""
    select(transmit)
    authenticate_management(transmit)
    public_key = generate(transmit, slot, algorithm)
    certificate = issuer.certify(public_key, f"qsign test {slot:02X}")
    put_certificate(transmit, slot, certificate)
    return certificate
