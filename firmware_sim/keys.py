"""The card's cryptographic core: key generation, private-key operations, the
management key's block cipher. SP 800-78-4 names the algorithms.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ground.iso7816 import tlv
from ground.piv import Algorithm

ASYMMETRIC = frozenset({Algorithm.RSA_2048, Algorithm.ECC_P256, Algorithm.ECC_P384})
SYMMETRIC_KEY_LENGTH: dict[int, int] = {
    Algorithm.TDES: 24,
    Algorithm.AES_128: 16,
    Algorithm.AES_192: 24,
    Algorithm.AES_256: 32,
}
_CURVES: dict[int, ec.EllipticCurve] = {
    Algorithm.ECC_P256: ec.SECP256R1(),
    Algorithm.ECC_P384: ec.SECP384R1(),
}
_PREHASH: dict[int, hashes.HashAlgorithm] = {
    Algorithm.ECC_P256: hashes.SHA256(),
    Algorithm.ECC_P384: hashes.SHA384(),
}

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# DigestInfo prefixes (RFC 8017 §9.2 note 1): a PKCS#1 v1.5 block carrying one of
# these is signed through OpenSSL (constant time); anything else goes raw.
_DIGEST_INFO: dict[bytes, hashes.HashAlgorithm] = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1(),  # noqa: S303 - recognised, not chosen: the host picks the hash
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224(),
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}


class KeyOperationError(ValueError):
    """The input does not fit the key (wrong length or out of range)."""


def generate(algorithm: int) -> PrivateKey:
    if algorithm == Algorithm.RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curve = _CURVES.get(algorithm)
    if curve is None:
        raise KeyOperationError(f"algorithm 0x{algorithm:02X} is not an asymmetric key type")
    return ec.generate_private_key(curve)


def to_pkcs8(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def from_pkcs8(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyOperationError("unsupported key type in card state")
    return key


def public_key_template(key: PrivateKey) -> bytes:
    """The public key data object, tag 7F49 (SP 800-73-4 Part 2 §3.3.2 Table 14)."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return tlv(0x7F49, tlv(0x81, n) + tlv(0x82, e))
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return tlv(0x7F49, tlv(0x86, point))


def sign(key: PrivateKey, challenge: bytes) -> bytes:
    """The private-key operation of GENERAL AUTHENTICATE (SP 800-73-4 Part 2 §3.2.4).

    ECDSA: `challenge` is the hash, at most the field size (shorter is
    left-padded, as the integer value is what ECDSA uses); the answer is a DER
    ECDSA-Sig-Value. RSA: `challenge` is the whole encoded block, exactly the
    modulus length; the answer is challenge^d mod n.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        if not challenge or len(challenge) > size:
            raise KeyOperationError("hash longer than the curve's field")
        digest = challenge.rjust(size, b"\x00")
        prehash = hashes.SHA256() if size == 32 else hashes.SHA384()
        return key.sign(digest, ec.ECDSA(utils.Prehashed(prehash)))
    return _rsa_private(key, challenge)


def _rsa_private(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    k = key.key_size // 8
    if len(block) != k:
        raise KeyOperationError("RSA input must be exactly the modulus length")
    hashed = _pkcs1_v15_digest(block, k)
    if hashed is not None:
        algorithm, digest = hashed
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
    # PSS-encoded or raw blocks: blinded CRT exponentiation, checked before release.
    priv = key.private_numbers()
    pub = priv.public_numbers
    m = int.from_bytes(block, "big")
    if m >= pub.n:
        raise KeyOperationError("RSA input out of range")
    r = secrets.randbelow(pub.n - 2) + 2
    blinded = (m * pow(r, pub.e, pub.n)) % pub.n
    s1 = pow(blinded, priv.dmp1, priv.p)
    s2 = pow(blinded, priv.dmq1, priv.q)
    h = (priv.iqmp * (s1 - s2)) % priv.p
    s = ((s2 + h * priv.q) * pow(r, -1, pub.n)) % pub.n
    if pow(s, pub.e, pub.n) != m:  # a faulty result would leak a factor of n
        raise KeyOperationError("RSA self-check failed")
    return s.to_bytes(k, "big")


def _pkcs1_v15_digest(block: bytes, k: int) -> tuple[hashes.HashAlgorithm, bytes] | None:
    """(hash, digest) when `block` is EMSA-PKCS1-v1_5 over a known DigestInfo."""
    if block[:2] != b"\x00\x01":
        return None
    sep = block.find(b"\x00", 2)
    if sep < 10 or block[2:sep] != b"\xff" * (sep - 2):
        return None
    payload = block[sep + 1 :]
    for prefix, algorithm in _DIGEST_INFO.items():
        if payload.startswith(prefix) and len(payload) == len(prefix) + algorithm.digest_size:
            return algorithm, payload[len(prefix) :]
    return None


def ecdh(key: PrivateKey, peer_point: bytes) -> bytes:
    """Key agreement for the key-management slot (SP 800-73-4 Part 2 §3.2.4, tag 85)."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyOperationError("key agreement needs an EC key")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, peer_point)
    except ValueError as exc:
        raise KeyOperationError("peer point is not on the curve") from exc
    return key.exchange(ec.ECDH(), peer)


def block_size(algorithm: int) -> int:
    return 8 if algorithm == Algorithm.TDES else 16


def _cipher(algorithm: int, key: bytes) -> Cipher[modes.ECB]:
    if algorithm == Algorithm.TDES:
        return Cipher(TripleDES(key), modes.ECB())  # noqa: S305 - one block, as PIV specifies
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def encrypt_block(algorithm: int, key: bytes, block: bytes) -> bytes:
    encryptor = _cipher(algorithm, key).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def decrypt_block(algorithm: int, key: bytes, block: bytes) -> bytes:
    decryptor = _cipher(algorithm, key).decryptor()
    return decryptor.update(block) + decryptor.finalize()
