"""The card's cryptographic core (firmware_sim.keys), checked against `cryptography`."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from firmware_sim import keys
from firmware_sim.keys import KeyOperationError
from ground.iso7816 import parse_single, parse_tlv_dict
from ground.piv import Algorithm
from tests.support import piv_apdus as piv

MESSAGE = b"keys unit test"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    # One RSA-2048 generation for the module: it is the slow part.
    key = keys.generate(Algorithm.RSA_2048)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def p256_key() -> ec.EllipticCurvePrivateKey:
    key = keys.generate(Algorithm.ECC_P256)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


# Generation and encodings ------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "curve"), [(Algorithm.ECC_P256, ec.SECP256R1),
                                                  (Algorithm.ECC_P384, ec.SECP384R1)])
def test_generate_ec(algorithm: int, curve: type[ec.EllipticCurve]) -> None:
    key = keys.generate(algorithm)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, curve)
    assert keys.generate(algorithm).private_numbers() != key.private_numbers()


def test_generate_rsa(rsa_key: rsa.RSAPrivateKey) -> None:
    assert rsa_key.key_size == 2048
    assert rsa_key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize("algorithm", [Algorithm.TDES, Algorithm.AES_128, 0x06, 0x00, 0xFF])
def test_generate_refuses_non_asymmetric_types(algorithm: int) -> None:
    with pytest.raises(KeyOperationError):
        keys.generate(algorithm)


def test_asymmetric_and_symmetric_sets() -> None:
    assert {Algorithm.RSA_2048, Algorithm.ECC_P256, Algorithm.ECC_P384} == keys.ASYMMETRIC
    assert keys.SYMMETRIC_KEY_LENGTH == {0x03: 24, 0x08: 16, 0x0A: 24, 0x0C: 32}


def test_pkcs8_round_trip(p256_key: ec.EllipticCurvePrivateKey,
                          rsa_key: rsa.RSAPrivateKey) -> None:
    for key in (p256_key, rsa_key):
        der = keys.to_pkcs8(key)
        assert der[0] == 0x30
        restored = keys.from_pkcs8(der)
        assert restored.private_numbers() == key.private_numbers()


def test_from_pkcs8_refuses_other_key_types() -> None:
    der = keys.to_pkcs8(ed25519.Ed25519PrivateKey.generate())  # type: ignore[arg-type]
    with pytest.raises(KeyOperationError):
        keys.from_pkcs8(der)


def test_public_key_template_ec(p256_key: ec.EllipticCurvePrivateKey) -> None:
    template = keys.public_key_template(p256_key)
    assert template[:2] == b"\x7f\x49"
    content = parse_tlv_dict(parse_single(template, 0x7F49))
    point = p256_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert content == {0x86: point}
    assert len(point) == 65 and point[0] == 0x04


def test_public_key_template_rsa(rsa_key: rsa.RSAPrivateKey) -> None:
    content = parse_tlv_dict(parse_single(keys.public_key_template(rsa_key), 0x7F49))
    numbers = rsa_key.public_key().public_numbers()
    assert len(content[0x81]) == 256  # no leading zero byte
    assert int.from_bytes(content[0x81], "big") == numbers.n
    assert content[0x82] == b"\x01\x00\x01"
    decoded = piv.public_key_from_template(keys.public_key_template(rsa_key), piv.ALG_RSA_2048)
    assert piv.same_public_key(decoded, rsa_key.public_key())


# ECDSA -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "hash_algorithm"),
    [(Algorithm.ECC_P256, hashes.SHA256()), (Algorithm.ECC_P384, hashes.SHA384()),
     (Algorithm.ECC_P384, hashes.SHA256()), (Algorithm.ECC_P256, hashes.SHA1())],  # noqa: S303 - a short hash
    ids=["P-256/SHA-256", "P-384/SHA-384", "P-384/SHA-256", "P-256/SHA-1"],
)
def test_ecdsa_sign_verifies(algorithm: int, hash_algorithm: hashes.HashAlgorithm) -> None:
    key = keys.generate(algorithm)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    h = hashes.Hash(hash_algorithm)
    h.update(MESSAGE)
    digest = h.finalize()
    signature = keys.sign(key, digest)
    # A shorter hash is its integer value: verifying as that hash must succeed.
    key.public_key().verify(signature, digest, ec.ECDSA(utils.Prehashed(hash_algorithm)))


def test_ecdsa_signatures_are_randomised(p256_key: ec.EllipticCurvePrivateKey) -> None:
    digest = hashlib.sha256(MESSAGE).digest()
    assert keys.sign(p256_key, digest) != keys.sign(p256_key, digest)


def test_ecdsa_refuses_empty_or_too_long_hash(p256_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(KeyOperationError):
        keys.sign(p256_key, b"")
    with pytest.raises(KeyOperationError):
        keys.sign(p256_key, hashlib.sha384(MESSAGE).digest())


# RSA ---------------------------------------------------------------------------------------------


def test_rsa_pkcs1_v15_block(rsa_key: rsa.RSAPrivateKey) -> None:
    signature = keys.sign(rsa_key, piv.pkcs1_v15_block(MESSAGE))
    assert len(signature) == 256
    rsa_key.public_key().verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    # PKCS#1 v1.5 is deterministic: the card's answer equals OpenSSL's own signature.
    assert signature == rsa_key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())


# SHA-1 only to check the DigestInfo table; hosts choose the hash, not the card.
@pytest.mark.parametrize("hash_algorithm",
                         [hashes.SHA1(), hashes.SHA384(), hashes.SHA512()])  # noqa: S303
def test_rsa_pkcs1_v15_other_digests(hash_algorithm: hashes.HashAlgorithm,
                                     rsa_key: rsa.RSAPrivateKey) -> None:
    expected = rsa_key.sign(MESSAGE, padding.PKCS1v15(), hash_algorithm)
    # Recover the encoded block from OpenSSL's signature and let the card sign it again.
    numbers = rsa_key.public_key().public_numbers()
    block = pow(int.from_bytes(expected, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    assert block[:2] == b"\x00\x01"
    assert keys.sign(rsa_key, block) == expected


def test_rsa_pss_block_built_by_hand(rsa_key: rsa.RSAPrivateKey) -> None:
    signature = keys.sign(rsa_key, piv.pss_block(MESSAGE))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    rsa_key.public_key().verify(signature, MESSAGE, pss, hashes.SHA256())
    with pytest.raises(InvalidSignature):
        rsa_key.public_key().verify(signature, MESSAGE[:-1], pss, hashes.SHA256())


def test_rsa_raw_operation_is_the_private_exponent(rsa_key: rsa.RSAPrivateKey) -> None:
    numbers = rsa_key.private_numbers()
    n = numbers.public_numbers.n
    for m in (1, 2, 0x1234567890, n - 1):
        block = m.to_bytes(256, "big")
        assert keys.sign(rsa_key, block) == pow(m, numbers.d, n).to_bytes(256, "big")


def test_rsa_lookalike_pkcs1_blocks_take_the_raw_path(rsa_key: rsa.RSAPrivateKey) -> None:
    numbers = rsa_key.private_numbers()
    n = numbers.public_numbers.n
    good = piv.pkcs1_v15_block(MESSAGE)
    lookalikes = [
        good[:2] + b"\xff" * 7 + b"\x00" + good[10:],  # padding string too short
        good[:10] + b"\xfe" + good[11:],  # a padding byte that is not FF
        good[:-33] + b"\x01" + good[-32:],  # a digest info that names no hash
    ]
    for block in lookalikes:
        m = int.from_bytes(block, "big")
        assert keys.sign(rsa_key, block) == pow(m, numbers.d, n).to_bytes(256, "big")


@pytest.mark.parametrize("length", [0, 255, 257])
def test_rsa_refuses_wrong_length(length: int, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyOperationError):
        keys.sign(rsa_key, b"\x01" * length)


def test_rsa_refuses_input_not_below_modulus(rsa_key: rsa.RSAPrivateKey) -> None:
    n = rsa_key.public_key().public_numbers().n
    for m in (n, (1 << 2048) - 1):
        with pytest.raises(KeyOperationError):
            keys.sign(rsa_key, m.to_bytes(256, "big"))


# ECDH --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [Algorithm.ECC_P256, Algorithm.ECC_P384])
def test_ecdh_matches_cryptography(algorithm: int) -> None:
    key = keys.generate(algorithm)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    peer = ec.generate_private_key(key.curve)
    point = peer.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert keys.ecdh(key, point) == peer.exchange(ec.ECDH(), key.public_key())


def test_ecdh_accepts_compressed_points(p256_key: ec.EllipticCurvePrivateKey) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    point = peer.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    assert keys.ecdh(p256_key, point) == peer.exchange(ec.ECDH(), p256_key.public_key())


def test_ecdh_refuses_bad_points(p256_key: ec.EllipticCurvePrivateKey) -> None:
    peer = ec.generate_private_key(ec.SECP384R1())
    other_curve = peer.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    own = p256_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    off_curve = own[:-1] + bytes([own[-1] ^ 1])
    for point in (b"", b"\x04", b"\x00", other_curve, off_curve, b"\x04" + bytes(64)):
        with pytest.raises(KeyOperationError):
            keys.ecdh(p256_key, point)


def test_ecdh_needs_an_ec_key(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyOperationError):
        keys.ecdh(rsa_key, b"\x04" + bytes(64))


# Management key block cipher --------------------------------------------------------------------


def test_tdes_block_matches_cryptography() -> None:
    key = piv.DEFAULT_MANAGEMENT_KEY
    block = bytes.fromhex("0011223344556677")
    enc = Cipher(TripleDES(key), modes.ECB()).encryptor()  # noqa: S305
    expected = enc.update(block) + enc.finalize()
    assert keys.encrypt_block(Algorithm.TDES, key, block) == expected
    assert keys.decrypt_block(Algorithm.TDES, key, expected) == block
    assert keys.block_size(Algorithm.TDES) == 8


@pytest.mark.parametrize(("algorithm", "length"), [(Algorithm.AES_128, 16),
                                                   (Algorithm.AES_192, 24),
                                                   (Algorithm.AES_256, 32)])
def test_aes_block_matches_cryptography(algorithm: int, length: int) -> None:
    key = bytes(range(length))
    block = bytes(range(16, 32))
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    expected = enc.update(block) + enc.finalize()
    assert keys.encrypt_block(algorithm, key, block) == expected
    assert keys.decrypt_block(algorithm, key, expected) == block
    assert keys.block_size(algorithm) == 16


def test_block_cipher_matches_the_host_helper() -> None:
    # The card and the test host must agree, or every management test is vacuous.
    block = bytes(8)
    assert keys.encrypt_block(Algorithm.TDES, piv.DEFAULT_MANAGEMENT_KEY, block) == (
        piv.encrypt_block(piv.ALG_TDES, piv.DEFAULT_MANAGEMENT_KEY, block))
    assert keys.encrypt_block(Algorithm.TDES, piv.DEFAULT_MANAGEMENT_KEY, block) != block


def test_block_cipher_refuses_partial_blocks() -> None:
    with pytest.raises(ValueError):
        keys.encrypt_block(Algorithm.TDES, piv.DEFAULT_MANAGEMENT_KEY, bytes(7))
