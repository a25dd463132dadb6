"""The CA's signing keys: in a 0600 file, or in a PKCS#11 token (an HSM; SoftHSM2
in tests) so that the key never sits in a file.

Everything the CA signs (certificates, CRLs, OCSP responses, timestamps) is
built with asn1crypto and signed through `CaKey.sign`, so both kinds of key
serve every structure the same way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ground.files import write_atomically

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


class CaKeyError(Exception):
    """A CA key cannot be loaded or used."""


class CaKey(Protocol):
    """A private key the CA signs with."""

    @property
    def public_key_info(self) -> asn1_keys.PublicKeyInfo: ...

    @property
    def algorithm(self) -> str:
        """'ecdsa' or 'rsa'."""

    def sign(self, data: bytes, hash_name: str) -> bytes:
        """ECDSA: DER Ecdsa-Sig-Value; RSA: PKCS#1 v1.5. `hash_name`: sha256/384/512."""


def signature_algorithm(key: CaKey, hash_name: str) -> str:
    """The asn1crypto SignedDigestAlgorithm name for `key` and `hash_name`."""
    return f"{hash_name}_{key.algorithm}"


def default_hash(key: CaKey) -> str:
    """SHA-384 for P-384 keys (the CA default), SHA-256 otherwise."""
    info = key.public_key_info
    if key.algorithm == "ecdsa" and info.curve[1] == "secp384r1":
        return "sha384"
    return "sha256"


def signing_choice(key: CaKey) -> tuple[str, str]:
    """The hash `key` signs with (`default_hash`) and the signature algorithm's name."""
    hash_name = default_hash(key)
    return hash_name, signature_algorithm(key, hash_name)


@dataclass
class FileKey:
    """A key in a PEM file that only its owner may read."""

    path: Path
    _key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @classmethod
    def generate(cls, path: Path, curve: ec.EllipticCurve | None = None) -> FileKey:
        key = ec.generate_private_key(curve or ec.SECP384R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, pem, 0o600)
        return cls(path, key)

    @classmethod
    def load(cls, path: Path) -> FileKey:
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise CaKeyError(f"{path}: key file readable by others (mode {mode:o})")
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise CaKeyError(f"{path}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CaKeyError(f"{path}: not an EC or RSA key")
        return cls(path, key)

    @property
    def public_key_info(self) -> asn1_keys.PublicKeyInfo:
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return asn1_keys.PublicKeyInfo.load(der)

    @property
    def algorithm(self) -> str:
        return "ecdsa" if isinstance(self._key, ec.EllipticCurvePrivateKey) else "rsa"

    def sign(self, data: bytes, hash_name: str) -> bytes:
        algorithm = _HASHES[hash_name]
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(algorithm))
        return self._key.sign(data, padding.PKCS1v15(), algorithm)


# DigestInfo up to the digest (RFC 8017 §9.2 note 1), for CKM_RSA_PKCS.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


class Pkcs11Key:
    """A key on a PKCS#11 token, found by label; the digest is computed here and the
    token signs it (CKM_ECDSA / CKM_RSA_PKCS over DigestInfo)."""

    def __init__(self, module: str, token_label: str, pin: str, key_label: str) -> None:
        import pkcs11

        try:
            self._session, self._lock = _logged_in_session(module, token_label, pin)
            self._private: Any = self._session.get_key(pkcs11.ObjectClass.PRIVATE_KEY,
                                                  label=key_label)
            public = self._session.get_key(pkcs11.ObjectClass.PUBLIC_KEY, label=key_label)
        except pkcs11.exceptions.PKCS11Error as exc:
            raise CaKeyError(f"PKCS#11 key {key_label!r} on {token_label!r}: "
                             f"{type(exc).__name__}") from exc
        self._spki = _spki_of_pkcs11(public)
        self.key_label = key_label

    @property
    def public_key_info(self) -> asn1_keys.PublicKeyInfo:
        return self._spki

    @property
    def algorithm(self) -> str:
        return "ecdsa" if self._spki.algorithm == "ec" else "rsa"

    def sign(self, data: bytes, hash_name: str) -> bytes:
        import hashlib

        import pkcs11

        digest = hashlib.new(hash_name, data).digest()
        with self._lock:
            try:
                if self.algorithm == "ecdsa":
                    raw = self._private.sign(digest, mechanism=pkcs11.Mechanism.ECDSA)
                    half = len(raw) // 2
                    return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                                int.from_bytes(raw[half:], "big"))
                return bytes(self._private.sign(_DIGEST_INFO[hash_name] + digest,
                                                mechanism=pkcs11.Mechanism.RSA_PKCS))
            except pkcs11.exceptions.PKCS11Error as exc:
                raise CaKeyError(f"PKCS#11 signature failed: {type(exc).__name__}") from exc


# PKCS#11 login is per application and token: every key of a token shares one session,
# opened once, and its lock (one operation at a time on that session).
_SESSIONS: dict[tuple[str, str], tuple[Any, threading.Lock]] = {}
_SESSIONS_LOCK = threading.Lock()


def _logged_in_session(module: str, token_label: str, pin: str) -> tuple[Any, threading.Lock]:
    import pkcs11

    with _SESSIONS_LOCK:
        found = _SESSIONS.get((module, token_label))
        if found is None:
            token = pkcs11.lib(module).get_token(token_label=token_label)
            found = _SESSIONS[(module, token_label)] = (token.open(user_pin=pin),
                                                        threading.Lock())
        return found


def _spki_of_pkcs11(public: Any) -> asn1_keys.PublicKeyInfo:
    import pkcs11
    from pkcs11.util.ec import encode_ec_public_key
    from pkcs11.util.rsa import encode_rsa_public_key

    if public.key_type == pkcs11.KeyType.EC:
        return asn1_keys.PublicKeyInfo.load(encode_ec_public_key(public))
    rsa_key = asn1_keys.RSAPublicKey.load(encode_rsa_public_key(public))
    return asn1_keys.PublicKeyInfo({"algorithm": {"algorithm": "rsa"}, "public_key": rsa_key})


def generate_pkcs11_key(module: str, token_label: str, pin: str, key_label: str) -> None:
    """Make a P-384 key pair on the token (private: sensitive, never extractable)."""
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    lib = pkcs11.lib(module)
    token = lib.get_token(token_label=token_label)
    with token.open(rw=True, user_pin=pin) as session:
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC,
            {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")},
            local=True)
        params.generate_keypair(store=True, label=key_label, private_template={
            pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False})
