"""What PIV cards hold, read by the host: key algorithms, certificate objects, public key
templates, the CHUID's GUID, and the challenge a key signs (SP 800-73-4, SP 800-78-4).
Pure functions over bytes; `agent.tokens.piv` sends the commands."""

from __future__ import annotations

import logging

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.tokens.emsa import emsa_pkcs1_v15_encode, emsa_pss_encode
from agent.tokens.errors import TokenResponseError, UnsupportedMechanism
from agent.tokens.model import KeyType, Padding, SignatureAlgorithm
from ground.iso7816 import TlvError, parse_tlv_dict
from ground.piv import Algorithm

log = logging.getLogger(__name__)

KEY_TYPES = {
    Algorithm.ECC_P256: KeyType.EC_P256,
    Algorithm.ECC_P384: KeyType.EC_P384,
    Algorithm.RSA_2048: KeyType.RSA_2048,
}
ALGORITHMS = {key_type: alg for alg, key_type in KEY_TYPES.items()}
KEY_TYPES_BY_ID: dict[int, KeyType] = {int(alg): key_type for alg, key_type in KEY_TYPES.items()}


def certificate_from_object(content: bytes) -> bytes:
    """The certificate in a certificate data object (SP 800-73-4 Part 1 Appendix A)."""
    try:
        items = parse_tlv_dict(content)
    except TlvError as exc:
        raise TokenResponseError("malformed certificate object") from exc
    if items.get(0x71, b"\x00")[:1] not in (b"\x00", b""):
        raise UnsupportedMechanism("compressed certificates are not supported")
    if 0x70 not in items:
        raise TokenResponseError("certificate object without a certificate")
    return items[0x70]


def public_key_to_spki(content: bytes, key_type: KeyType) -> bytes:
    """The 7F49 content (SP 800-73-4 Part 2 §3.3.2) as a SubjectPublicKeyInfo (DER)."""
    try:
        items = parse_tlv_dict(content)
        public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
        if key_type.is_ec:
            curve: ec.EllipticCurve = (ec.SECP256R1() if key_type is KeyType.EC_P256
                                       else ec.SECP384R1())
            public = ec.EllipticCurvePublicKey.from_encoded_point(curve, items[0x86])
        else:
            public = rsa.RSAPublicNumbers(int.from_bytes(items[0x82], "big"),
                                          int.from_bytes(items[0x81], "big")).public_key()
    except (TlvError, KeyError, ValueError) as exc:
        raise TokenResponseError("malformed public key") from exc
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def key_type_of(metadata: dict[int, bytes] | None, certificate: bytes | None
                ) -> KeyType | None:
    """The key's type from its metadata, else from its certificate; None when unknown."""
    if metadata is not None and metadata.get(0x01):
        return KEY_TYPES_BY_ID.get(metadata[0x01][0])
    if certificate is None:
        return None
    try:
        public = x509.load_der_x509_certificate(certificate).public_key()
    except ValueError:
        log.warning("unreadable certificate on the card")
        return None
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {256: KeyType.EC_P256, 384: KeyType.EC_P384}.get(public.curve.key_size)
    if isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048:
        return KeyType.RSA_2048
    return None


def signing_challenge(key_type: KeyType, digest: bytes, algorithm: SignatureAlgorithm
                      ) -> bytes:
    """What GENERAL AUTHENTICATE signs (SP 800-73-4 Part 2 §3.2.4) for `digest`."""
    if key_type.is_ec:
        # ECDSA uses the leftmost field-size bits of the hash (FIPS 186-5 §6.4.1).
        return digest[: key_type.size // 8]
    if algorithm.padding is Padding.PKCS1V15:
        return emsa_pkcs1_v15_encode(digest, algorithm.hash, key_type.size // 8)
    return emsa_pss_encode(digest, algorithm.hash, key_type.size)


def chuid_guid(chuid: bytes | None) -> str | None:
    """The GUID (tag 34) of a CHUID (SP 800-73-4 Part 1 §3.1.2), None when all zero."""
    if not chuid:
        return None
    try:
        guid = parse_tlv_dict(chuid).get(0x34)
    except TlvError:
        return None
    return guid.hex() if guid and any(guid) else None
