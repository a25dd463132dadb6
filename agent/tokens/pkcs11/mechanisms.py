"""From a `SignatureAlgorithm` and a key type to PKCS#11 mechanisms: what is signed, with
which CKM_* and parameter, and how the token's answer becomes a standard signature."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11.mechanisms import MGF, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from agent.tokens.errors import InvalidInput, OperationFailed, UnsupportedMechanism
from agent.tokens.model import HashAlgorithm, KeyType, Padding, SignatureAlgorithm
from agent.tokens.pkcs11.cryptoki import CkRsaPkcsPssParams

# CKA_EC_PARAMS of the curves qsign uses: the DER of their named-curve OIDs.
CURVE_PARAMS: dict[KeyType, bytes] = {
    KeyType.EC_P256: encode_named_curve_parameters("secp256r1"),
    KeyType.EC_P384: encode_named_curve_parameters("secp384r1"),
}
CURVES: dict[bytes, KeyType] = {params: key_type for key_type, params in CURVE_PARAMS.items()}

_HASH_MECHANISMS: dict[HashAlgorithm, tuple[Mechanism, MGF]] = {
    HashAlgorithm.SHA256: (Mechanism.SHA256, MGF.SHA256),
    HashAlgorithm.SHA384: (Mechanism.SHA384, MGF.SHA384),
    HashAlgorithm.SHA512: (Mechanism.SHA512, MGF.SHA512),
}
GENERATION_MECHANISMS = {
    KeyType.EC_P256: Mechanism.EC_KEY_PAIR_GEN,
    KeyType.EC_P384: Mechanism.EC_KEY_PAIR_GEN,
    KeyType.RSA_2048: Mechanism.RSA_PKCS_KEY_PAIR_GEN,
}


def signing_input(algorithm: SignatureAlgorithm, key_type: KeyType, digest: bytes
                  ) -> tuple[Mechanism, bytes | None, bytes]:
    """(mechanism, raw mechanism parameter, data) that sign `digest` as `algorithm`:
    CKM_ECDSA over the digest cut to the order's size (X9.62 / FIPS 186-5 §6.4.1),
    CKM_RSA_PKCS over DigestInfo || digest (RFC 8017 §9.2), CKM_RSA_PKCS_PSS with
    CK_RSA_PKCS_PSS_PARAMS (hash, MGF1 with the same hash, salt as long as the hash)."""
    if len(digest) != algorithm.hash.digest_size:
        raise InvalidInput(f"a {algorithm.hash.value} digest has {algorithm.hash.digest_size} "
                           f"bytes, not {len(digest)}")
    if not algorithm.fits(key_type):
        raise UnsupportedMechanism(f"{algorithm} does not fit a {key_type.value} key")
    if algorithm.padding is Padding.ECDSA:
        return Mechanism.ECDSA, None, digest[:key_type.size // 8]
    if algorithm.padding is Padding.PKCS1V15:
        return Mechanism.RSA_PKCS, None, algorithm.hash.digest_info_prefix + digest
    hash_mechanism, mgf = _HASH_MECHANISMS[algorithm.hash]
    params = CkRsaPkcsPssParams(hash_mechanism, mgf, algorithm.hash.digest_size)
    return Mechanism.RSA_PKCS_PSS, bytes(params), digest


def der_ecdsa(raw: bytes) -> bytes:
    """PKCS#11's r || s (v2.40 §2.3.1) as a DER Ecdsa-Sig-Value (X9.62, RFC 3279)."""
    if not raw or len(raw) % 2:
        raise OperationFailed("the token answered a malformed ECDSA signature")
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                int.from_bytes(raw[half:], "big"))
