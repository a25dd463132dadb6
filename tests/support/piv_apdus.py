"""Host-side PIV APDU builders for tests (SP 800-73-4 Part 2, ISO 7816-4 framing).

Works with any `Connection` (`transmit(apdu) -> (data, sw)`): the in-process
simulator, pyscard through pcscd, or a replay. Deliberately independent of
`firmware_sim` so the card's answers are checked against the standard, not
against the firmware's own constants.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from ground.iso7816 import parse_single, parse_tlv_dict, tlv

PIV_AID = bytes.fromhex("A000000308000010000100")
DEFAULT_PIN = "123456"
DEFAULT_PUK = "12345678"
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")

# Algorithm identifiers (SP 800-78-4 Table 5).
ALG_TDES = 0x03
ALG_RSA_2048 = 0x07
ALG_AES_128 = 0x08
ALG_AES_192 = 0x0A
ALG_AES_256 = 0x0C
ALG_P256 = 0x11
ALG_P384 = 0x14

# Key references (SP 800-73-4 Part 1 Table 4).
PIN_REF = 0x80
PUK_REF = 0x81
MANAGEMENT_REF = 0x9B
SLOT_AUTHENTICATION = 0x9A
SLOT_SIGNATURE = 0x9C
SLOT_KEY_MANAGEMENT = 0x9D
SLOT_CARD_AUTHENTICATION = 0x9E

# Data object tags (SP 800-73-4 Part 1 Table 3) and the vendor attestation object.
CHUID = 0x5FC102
CCC = 0x5FC107
KEY_HISTORY = 0x5FC10C
FINGERPRINTS = 0x5FC103  # PIN-protected
DISCOVERY = 0x7E
ATTESTATION_CERTIFICATE = 0x5FFF01
SLOT_CERTIFICATES = {
    SLOT_AUTHENTICATION: 0x5FC105,
    SLOT_SIGNATURE: 0x5FC10A,
    SLOT_KEY_MANAGEMENT: 0x5FC10B,
    SLOT_CARD_AUTHENTICATION: 0x5FC101,
}

# Instructions: SP 800-73-4 Part 2 Table 8, then the common vendor extensions.
INS_SELECT = 0xA4
INS_GET_DATA = 0xCB
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
INS_GENERATE = 0x47
INS_GENERAL_AUTHENTICATE = 0x87
INS_PUT_DATA = 0xDB
INS_GET_RESPONSE = 0xC0
INS_GET_METADATA = 0xF7
INS_GET_SERIAL = 0xF8
INS_ATTEST = 0xF9
INS_SET_PIN_RETRIES = 0xFA
INS_RESET = 0xFB
INS_GET_VERSION = 0xFD
INS_SET_MANAGEMENT_KEY = 0xFF

SW_OK = 0x9000
SHORT_MAX = 255


class Connection(Protocol):
    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...


@dataclass(frozen=True, slots=True)
class Command:
    """One command APDU before framing. `le` is the raw Le value (0 = maximum), None = absent."""

    ins: int
    p1: int = 0
    p2: int = 0
    data: bytes = b""
    le: int | None = None
    cla: int = 0x00

    def encode(self, *, extended: bool | None = None) -> bytes:
        """ISO 7816-3 §12.1.3 framing; extended only when asked or the data needs it."""
        if extended is None:
            extended = len(self.data) > SHORT_MAX
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        if not extended:
            if len(self.data) > SHORT_MAX:
                raise ValueError("data too long for a short APDU; chain it or use extended")
            lc = bytes([len(self.data)]) + self.data if self.data else b""
            le = b"" if self.le is None else bytes([self.le & 0xFF])
            return header + lc + le
        lc = b"\x00" + len(self.data).to_bytes(2, "big") + self.data if self.data else b""
        if self.le is None:
            le = b""
        else:
            # Case 2E carries its own 00 marker; in case 4E the Lc field already did.
            le = (b"" if self.data else b"\x00") + (self.le & 0xFFFF).to_bytes(2, "big")
        return header + lc + le

    def __bytes__(self) -> bytes:
        return self.encode()

    def chained(self, size: int = SHORT_MAX) -> list[bytes]:
        """Short APDUs with CLA bit 0x10 on all but the last (ISO 7816-4 §5.1.1.1)."""
        chunks = [self.data[i : i + size] for i in range(0, len(self.data), size)] or [b""]
        frames = [
            replace(self, cla=self.cla | 0x10, data=chunk, le=None).encode(extended=False)
            for chunk in chunks[:-1]
        ]
        frames.append(replace(self, data=chunks[-1]).encode(extended=False))
        return frames


Sendable = Command | bytes | Sequence[bytes]


def get_response(le: int = 0) -> bytes:
    return Command(INS_GET_RESPONSE, le=le).encode()


def send(connection: Connection, command: Sendable) -> tuple[bytes, int]:
    """Send (chained frames in order), then collect 61XX continuations with GET RESPONSE."""
    if isinstance(command, Command):
        frames: Sequence[bytes] = [command.encode()]
    elif isinstance(command, bytes):
        frames = [command]
    else:
        frames = command
    for frame in frames[:-1]:
        data, sw = connection.transmit(frame)
        if sw != SW_OK:
            return data, sw
    data, sw = connection.transmit(frames[-1])
    response = data
    while sw >> 8 == 0x61:
        data, sw = connection.transmit(get_response(sw & 0xFF))
        response += data
    return response, sw


def expect_ok(connection: Connection, command: Sendable) -> bytes:
    """Send and return the data; fail the test with the SW unless it is 9000."""
    data, sw = send(connection, command)
    assert sw == SW_OK, f"expected 9000, card answered {sw:04X}"
    return data


# Builders ---------------------------------------------------------------------------


def select(aid: bytes = PIV_AID) -> Command:
    return Command(INS_SELECT, 0x04, 0x00, aid, le=0)


def pin_field(pin: str | bytes) -> bytes:
    """PIN/PUK reference data: ASCII, right-padded with 0xFF to 8 bytes (SP 800-73-4 §2.4.3)."""
    raw = pin.encode() if isinstance(pin, str) else pin
    return raw.ljust(8, b"\xff")


def verify(pin: str | bytes | None = None) -> Command:
    """VERIFY the PIN; `None` is the status query (empty data)."""
    return Command(INS_VERIFY, 0x00, PIN_REF, b"" if pin is None else pin_field(pin))


def verify_reset() -> Command:
    """VERIFY P1=FF: reset the PIN's security status."""
    return Command(INS_VERIFY, 0xFF, PIN_REF)


def change_reference(ref: int, old: str | bytes, new: str | bytes) -> Command:
    return Command(INS_CHANGE_REFERENCE_DATA, 0x00, ref, pin_field(old) + pin_field(new))


def change_pin(old: str | bytes, new: str | bytes) -> Command:
    return change_reference(PIN_REF, old, new)


def change_puk(old: str | bytes, new: str | bytes) -> Command:
    return change_reference(PUK_REF, old, new)


def reset_retry_counter(puk: str | bytes, new_pin: str | bytes) -> Command:
    return Command(INS_RESET_RETRY_COUNTER, 0x00, PIN_REF, pin_field(puk) + pin_field(new_pin))


def _tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def get_data(tag: int) -> Command:
    return Command(INS_GET_DATA, 0x3F, 0xFF, tlv(0x5C, _tag_bytes(tag)), le=0)


def put_data(tag: int, content: bytes) -> Command:
    return Command(INS_PUT_DATA, 0x3F, 0xFF, tlv(0x5C, _tag_bytes(tag)) + tlv(0x53, content))


def certificate_object(der: bytes) -> bytes:
    """70 certificate, 71 CertInfo 00 (not compressed), FE error detection code."""
    return tlv(0x70, der) + tlv(0x71, b"\x00") + tlv(0xFE)


def put_certificate(slot: int, der: bytes) -> Command:
    return put_data(SLOT_CERTIFICATES[slot], certificate_object(der))


def generate(slot: int, algorithm: int, *, pin_policy: int | None = None,
             touch_policy: int | None = None) -> Command:
    control = tlv(0x80, bytes([algorithm]))
    if pin_policy is not None:
        control += tlv(0xAA, bytes([pin_policy]))
    if touch_policy is not None:
        control += tlv(0xAB, bytes([touch_policy]))
    return Command(INS_GENERATE, 0x00, slot, tlv(0xAC, control), le=0)


def sign(slot: int, algorithm: int, data: bytes) -> Command:
    """GENERAL AUTHENTICATE 7C{82 00, 81 data}: the key's private operation on `data`."""
    return Command(INS_GENERAL_AUTHENTICATE, algorithm, slot,
                   tlv(0x7C, tlv(0x82) + tlv(0x81, data)), le=0)


def ecdh(slot: int, algorithm: int, peer_point: bytes) -> Command:
    """GENERAL AUTHENTICATE 7C{82 00, 85 point}: key agreement."""
    return Command(INS_GENERAL_AUTHENTICATE, algorithm, slot,
                   tlv(0x7C, tlv(0x82) + tlv(0x85, peer_point)), le=0)


def general_authenticate(slot: int, algorithm: int, template: bytes) -> Command:
    return Command(INS_GENERAL_AUTHENTICATE, algorithm, slot, tlv(0x7C, template), le=0)


def get_metadata(ref: int) -> Command:
    return Command(INS_GET_METADATA, 0x00, ref, le=0)


def get_serial() -> Command:
    return Command(INS_GET_SERIAL, le=0)


def get_version() -> Command:
    return Command(INS_GET_VERSION, le=0)


def attest(slot: int) -> Command:
    return Command(INS_ATTEST, slot, 0x00, le=0)


def set_management_key(key: bytes, algorithm: int = ALG_TDES) -> Command:
    return Command(INS_SET_MANAGEMENT_KEY, 0xFF, 0xFF,
                   bytes([algorithm, MANAGEMENT_REF, len(key)]) + key)


def set_pin_retries(pin_tries: int, puk_tries: int) -> Command:
    return Command(INS_SET_PIN_RETRIES, pin_tries, puk_tries)


def factory_reset() -> Command:
    return Command(INS_RESET)


# Management key authentication (SP 800-73-4 Part 2 Appendix A) ---------------------------


def _cipher(algorithm: int, key: bytes) -> Cipher[modes.ECB]:
    if algorithm == ALG_TDES:
        return Cipher(TripleDES(key), modes.ECB())  # noqa: S305 - one block, as PIV specifies
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def encrypt_block(algorithm: int, key: bytes, block: bytes) -> bytes:
    enc = _cipher(algorithm, key).encryptor()
    return enc.update(block) + enc.finalize()


def decrypt_block(algorithm: int, key: bytes, block: bytes) -> bytes:
    dec = _cipher(algorithm, key).decryptor()
    return dec.update(block) + dec.finalize()


def _block_size(algorithm: int) -> int:
    return 8 if algorithm == ALG_TDES else 16


def authenticate_management(connection: Connection, key: bytes = DEFAULT_MANAGEMENT_KEY,
                            algorithm: int = ALG_TDES) -> int:
    """Mutual authentication (witness, then challenge). Returns the card's final SW.

    Raises AssertionError when the card answers 9000 but its response to our
    challenge is wrong: the card would then not hold the key it claims.
    """
    data, sw = send(connection, general_authenticate(MANAGEMENT_REF, algorithm, tlv(0x80)))
    if sw != SW_OK:
        return sw
    encrypted_witness = parse_tlv_dict(parse_single(data, 0x7C))[0x80]
    witness = decrypt_block(algorithm, key, encrypted_witness)
    challenge = secrets.token_bytes(_block_size(algorithm))
    data, sw = send(connection, general_authenticate(
        MANAGEMENT_REF, algorithm, tlv(0x80, witness) + tlv(0x81, challenge)))
    if sw != SW_OK:
        return sw
    answer = parse_tlv_dict(parse_single(data, 0x7C))[0x82]
    assert answer == encrypt_block(algorithm, key, challenge), "card failed our challenge"
    return sw


def authenticate_management_challenge(connection: Connection,
                                      key: bytes = DEFAULT_MANAGEMENT_KEY,
                                      algorithm: int = ALG_TDES) -> int:
    """Single challenge-response (card authenticates the host only). Returns the final SW."""
    data, sw = send(connection, general_authenticate(MANAGEMENT_REF, algorithm, tlv(0x81)))
    if sw != SW_OK:
        return sw
    challenge = parse_tlv_dict(parse_single(data, 0x7C))[0x81]
    response = encrypt_block(algorithm, key, challenge)
    _, sw = send(connection, general_authenticate(MANAGEMENT_REF, algorithm,
                                                  tlv(0x82, response)))
    return sw


# Parsing card answers --------------------------------------------------------------------

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_CURVES: dict[int, ec.EllipticCurve] = {ALG_P256: ec.SECP256R1(), ALG_P384: ec.SECP384R1()}


def public_key_from_template(template: bytes, algorithm: int) -> PublicKey:
    """Decode the 7F49 public key template (SP 800-73-4 Part 2 Table 14)."""
    return public_key_from_content(parse_single(template, 0x7F49), algorithm)


def public_key_from_content(content: bytes, algorithm: int) -> PublicKey:
    items = parse_tlv_dict(content)
    if algorithm == ALG_RSA_2048:
        n = int.from_bytes(items[0x81], "big")
        e = int.from_bytes(items[0x82], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[algorithm], items[0x86])


def signature_from_response(data: bytes) -> bytes:
    """The 82 value of a GENERAL AUTHENTICATE response template 7C."""
    return parse_tlv_dict(parse_single(data, 0x7C))[0x82]


def object_content(data: bytes) -> bytes:
    """The content of a GET DATA answer (tag 53)."""
    return parse_single(data, 0x53)


def certificate_from_object(data: bytes) -> x509.Certificate:
    """The certificate in a GET DATA answer for a certificate object."""
    return x509.load_der_x509_certificate(parse_tlv_dict(object_content(data))[0x70])


def same_public_key(a: PublicKey, b: PublicKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)


# Encodings a host builds before GENERAL AUTHENTICATE --------------------------------------

_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def pkcs1_v15_block(message: bytes, modulus_bytes: int = 256) -> bytes:
    """EMSA-PKCS1-v1_5 over SHA-256 (RFC 8017 §9.2)."""
    t = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    return b"\x00\x01" + b"\xff" * (modulus_bytes - len(t) - 3) + b"\x00" + t


def _mgf1_sha256(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def pss_block(message: bytes, mod_bits: int = 2048, salt: bytes | None = None) -> bytes:
    """EMSA-PSS-ENCODE with SHA-256, MGF1-SHA-256, 32-byte salt (RFC 8017 §9.1.1)."""
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    m_hash = hashlib.sha256(message).digest()
    salt = secrets.token_bytes(32) if salt is None else salt
    h = hashlib.sha256(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - len(salt) - len(h) - 2) + b"\x01" + salt
    masked = bytes(a ^ b for a, b in zip(db, _mgf1_sha256(h, len(db)), strict=True))
    masked = bytes([masked[0] & (0xFF >> (8 * em_len - em_bits))]) + masked[1:]
    em = masked + h + b"\xbc"
    return em.rjust(mod_bits // 8, b"\x00")


# Test certificates -------------------------------------------------------------------------


def make_certificate(min_size: int = 0, key: ec.EllipticCurvePrivateKey | None = None
                     ) -> bytes:
    """A self-signed P-256 certificate (DER) padded with SAN names to at least `min_size`."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qsign test")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    names: list[x509.GeneralName] = []
    while True:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        if len(der) >= min_size:
            return der
        missing = min_size - len(der)
        names += [x509.DNSName(f"host{len(names) + i:04d}.example.test")
                  for i in range(missing // 28 + 1)]
