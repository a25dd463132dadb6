"""RSA signature encodings a host builds for a card that only does the raw RSA
operation (PIV GENERAL AUTHENTICATE): EMSA-PSS and EMSA-PKCS1-v1_5, RFC 8017."""

from __future__ import annotations

import hashlib
import os

from agent.tokens.errors import UnsupportedMechanism
from agent.tokens.model import HashAlgorithm


def _mgf1(hash_name: str, seed: bytes, length: int) -> bytes:
    """MGF1 (RFC 8017 Appendix B.2.1)."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.new(hash_name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def emsa_pss_encode(digest: bytes, hash_algorithm: HashAlgorithm, mod_bits: int) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 §9.1.1), MGF1 with the same hash, salt length = hLen."""
    name = hash_algorithm.value.lower()
    h_len = hash_algorithm.digest_size
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    if em_len < 2 * h_len + 2:
        raise UnsupportedMechanism("modulus too small for PSS with this hash")
    salt = os.urandom(h_len)
    h = hashlib.new(name, b"\x00" * 8 + digest + salt).digest()
    db = b"\x00" * (em_len - 2 * h_len - 2) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1(name, h, len(db)), strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    encoded = bytes(masked) + h + b"\xbc"
    return encoded.rjust(mod_bits // 8, b"\x00")


def emsa_pkcs1_v15_encode(digest: bytes, hash_algorithm: HashAlgorithm, k: int) -> bytes:
    """EMSA-PKCS1-v1_5 (RFC 8017 §9.2)."""
    t = hash_algorithm.digest_info_prefix + digest
    return b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
