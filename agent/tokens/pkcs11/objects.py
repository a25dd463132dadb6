"""Key and certificate objects on a token, read the way the token layer needs them:
grouped by CKA_ID (PKCS#11 v2.40 §4.4), their key types and SubjectPublicKeyInfo, the
chain a token holds for a certificate, and the private key a signature needs.

Functions here run on a session the caller holds (`SlotSession`); errors from the
module propagate as python-pkcs11 exceptions for the caller to map.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import exceptions as p11e
from pkcs11.constants import Attribute, CertificateType, ObjectClass
from pkcs11.mechanisms import KeyType as P11KeyType
from pkcs11.types import Object, Session

from agent.tokens.errors import (
    InvalidInput,
    KeyNotFound,
    NotAuthenticated,
    OperationFailed,
    UnsupportedMechanism,
)
from agent.tokens.model import Credential, KeyType
from agent.tokens.pkcs11.cryptoki import Cryptoki, handle
from agent.tokens.pkcs11.mechanisms import CURVES
from ground.traffic import TRAFFIC

log = logging.getLogger(__name__)

_CRYPTOGRAPHY_CURVES: dict[KeyType, ec.EllipticCurve] = {
    KeyType.EC_P256: ec.SECP256R1(), KeyType.EC_P384: ec.SECP384R1()}
_MAX_ID_BYTES = 64


def key_type_of(attrs: dict[Attribute, Any]) -> KeyType | None:
    """The key type a key object's attributes show (CKA_KEY_TYPE with CKA_EC_PARAMS, or
    CKA_MODULUS / CKA_MODULUS_BITS), if it is one qsign uses."""
    kind = attrs.get(Attribute.KEY_TYPE)
    if kind == P11KeyType.EC and Attribute.EC_PARAMS in attrs:
        return CURVES.get(bytes(attrs[Attribute.EC_PARAMS]))
    if kind == P11KeyType.RSA and attrs.get(Attribute.MODULUS):
        bits = int.from_bytes(attrs[Attribute.MODULUS], "big").bit_length()
        return KeyType.RSA_2048 if bits == 2048 else None
    if kind == P11KeyType.RSA and attrs.get(Attribute.MODULUS_BITS):
        return KeyType.RSA_2048 if attrs[Attribute.MODULUS_BITS] == 2048 else None
    return None


def key_type_of_certificate(der: bytes) -> KeyType | None:
    """The key type of the public key a DER X.509 certificate certifies."""
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {"secp256r1": KeyType.EC_P256, "secp384r1": KeyType.EC_P384}.get(
            public.curve.name)
    if isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048:
        return KeyType.RSA_2048
    return None


def _ec_point(value: bytes, key_type: KeyType) -> bytes:
    """CKA_EC_POINT is DER OCTET STRING (v2.40 §2.3.3); some modules give the raw point."""
    if len(value) == 1 + 2 * (key_type.size // 8):
        return value
    return bytes(asn1_core.OctetString.load(value).native)


def spki_der(public: Any) -> bytes:
    """A public key's DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7)."""
    return bytes(public.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def spki_of(attrs: dict[Attribute, Any]) -> bytes | None:
    """The SubjectPublicKeyInfo of a key object's attributes, if they hold its public part
    (an EC public key's CKA_EC_POINT; an RSA key's CKA_MODULUS and CKA_PUBLIC_EXPONENT)."""
    key_type = key_type_of(attrs)
    try:
        if key_type is not None and key_type.is_ec and attrs.get(Attribute.EC_POINT):
            return spki_der(ec.EllipticCurvePublicKey.from_encoded_point(
                _CRYPTOGRAPHY_CURVES[key_type], _ec_point(attrs[Attribute.EC_POINT], key_type)))
        if (key_type is KeyType.RSA_2048 and attrs.get(Attribute.MODULUS)
                and attrs.get(Attribute.PUBLIC_EXPONENT)):
            return spki_der(rsa.RSAPublicNumbers(
                int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(attrs[Attribute.MODULUS], "big")).public_key())
    except ValueError:
        log.debug("a key object's public part does not parse")
    return None


def parse_id(credential_id: str) -> bytes:
    """A credential id (hex) as the CKA_ID it names."""
    try:
        key_id = bytes.fromhex(credential_id)
    except ValueError:
        raise InvalidInput(f"credential id {credential_id!r} is not hex (CKA_ID)") from None
    if not 0 < len(key_id) <= _MAX_ID_BYTES:
        raise InvalidInput(f"credential id must have 1 to {_MAX_ID_BYTES} bytes")
    return key_id


def read_attributes(obj: Object, keys: list[Attribute]) -> dict[Attribute, Any]:
    """The attributes of `keys` the object has and lets us read; the others are left out."""
    try:
        return dict(obj.get_attributes(keys))
    except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
        return {}


def label_of(attrs: dict[Attribute, Any]) -> str:
    """CKA_LABEL without its padding, or ""."""
    value = attrs.get(Attribute.LABEL)
    return value.strip() if isinstance(value, str) else ""


_KEY_ATTRIBUTES = [Attribute.ID, Attribute.LABEL, Attribute.KEY_TYPE, Attribute.EC_PARAMS,
                   Attribute.MODULUS]
PRIVATE_ATTRIBUTES = [*_KEY_ATTRIBUTES, Attribute.PUBLIC_EXPONENT, Attribute.ALWAYS_AUTHENTICATE]
_PUBLIC_ATTRIBUTES = [*_KEY_ATTRIBUTES, Attribute.MODULUS_BITS, Attribute.PUBLIC_EXPONENT,
                      Attribute.EC_POINT]
_CERTIFICATE_ATTRIBUTES = [Attribute.ID, Attribute.LABEL, Attribute.CERTIFICATE_TYPE,
                           Attribute.VALUE, Attribute.SUBJECT, Attribute.ISSUER]


@dataclass
class Found:
    """The objects sharing one CKA_ID."""

    private: list[dict[Attribute, Any]]
    public: list[dict[Attribute, Any]]
    certificates: list[dict[Attribute, Any]]


def issuers(certificate: dict[Attribute, Any], pool: list[dict[Attribute, Any]]
            ) -> tuple[bytes, ...]:
    """Issuers of `certificate` found among the token's certificates, nearest first."""
    chain: list[bytes] = []
    seen = {bytes(certificate[Attribute.VALUE])}
    current = certificate
    for _ in range(8):
        issuer, subject = current.get(Attribute.ISSUER), current.get(Attribute.SUBJECT)
        if issuer is None or issuer == subject:
            break
        parent = next((c for c in pool if c.get(Attribute.SUBJECT) == issuer
                       and bytes(c[Attribute.VALUE]) not in seen), None)
        if parent is None:
            break
        chain.append(bytes(parent[Attribute.VALUE]))
        seen.add(chain[-1])
        current = parent
    return tuple(chain)



def find_objects(session: Session, object_class: ObjectClass, key_id: bytes | None = None
         ) -> list[Object]:
    """C_FindObjects for one class, optionally one CKA_ID (PKCS#11 v2.40 §5.7)."""
    template: dict[Attribute, Any] = {Attribute.CLASS: object_class}
    if key_id is not None:
        template[Attribute.ID] = key_id
    found = list(session.get_objects(template))  # the search ends before objects are read
    log.log(TRAFFIC, "C_FindObjects(%s%s) -> %d", object_class.name,
            "" if key_id is None else f", id={key_id.hex()}", len(found))
    return found


def objects_by_id(session: Session, key_id: bytes | None = None) -> dict[bytes, Found]:
    """Private keys, public keys and X.509 certificates, grouped by CKA_ID."""
    groups: dict[bytes, Found] = {}
    for object_class, keys in ((ObjectClass.PRIVATE_KEY, PRIVATE_ATTRIBUTES),
                               (ObjectClass.PUBLIC_KEY, _PUBLIC_ATTRIBUTES),
                               (ObjectClass.CERTIFICATE, _CERTIFICATE_ATTRIBUTES)):
        for obj in find_objects(session, object_class, key_id):
            attrs = read_attributes(obj, keys)
            object_id = bytes(attrs.get(Attribute.ID) or b"")
            if not object_id:
                continue  # nothing can name it
            group = groups.setdefault(object_id, Found([], [], []))
            if object_class is ObjectClass.PRIVATE_KEY:
                group.private.append(attrs)
            elif object_class is ObjectClass.PUBLIC_KEY:
                group.public.append(attrs)
            elif (attrs.get(Attribute.CERTIFICATE_TYPE) == CertificateType.X_509
                  and attrs.get(Attribute.VALUE)):
                group.certificates.append(attrs)
    return groups


def read_credentials(session: Session, *, logged_in: bool, slot_id: int) -> list[Credential]:
    """Private keys by CKA_ID, with the certificate of the same CKA_ID. Before login a
    token may hide its private keys (CKA_PRIVATE): their public keys stand in."""
    groups = objects_by_id(session)
    pool = [c for group in groups.values() for c in group.certificates]
    found = []
    for key_id, group in sorted(groups.items()):
        if not group.private and (logged_in or not group.public):
            continue  # no private key, and none that a login would show
        key_type = next((t for t in map(key_type_of, group.private + group.public) if t),
                        None)
        if key_type is None and group.certificates:
            key_type = key_type_of_certificate(bytes(group.certificates[0][Attribute.VALUE]))
        if key_type is None:
            log.debug("slot %d: key %s is of a type qsign does not use", slot_id, key_id.hex())
            continue
        certificate = group.certificates[0] if group.certificates else None
        name = next((label_of(a) for a in group.private + group.public + group.certificates
                     if label_of(a)), "")
        found.append(Credential(
            id=key_id.hex().upper(), label=name, key_type=key_type,
            certificate=None if certificate is None else bytes(certificate[Attribute.VALUE]),
            chain=() if certificate is None else issuers(certificate, pool),
            pin_always=any(bool(a.get(Attribute.ALWAYS_AUTHENTICATE))
                           for a in group.private)))
    return found


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key as a signature needs it: its handle, its type, whether it wants the
    PIN for each signature (CKA_ALWAYS_AUTHENTICATE) and may sign at all (CKA_SIGN)."""

    handle: int
    key_type: KeyType
    always_authenticate: bool
    may_sign: bool


# What a signature reads of its key (C_GetAttributeValue through ctypes).
_SIGNING_ATTRIBUTES = [Attribute.KEY_TYPE, Attribute.EC_PARAMS, Attribute.MODULUS,
                       Attribute.ALWAYS_AUTHENTICATE, Attribute.SIGN]


class SigningKeys:
    """The private keys that signed, remembered for the session they were found in:
    finding a key and reading its attributes costs more than a SoftHSM2 signature.
    Forgotten with the session and whenever keys or certificates change (`clear`), and
    at each login: a C_Logout ends the handles of private objects (PKCS#11 v2.40 §5.6)."""

    def __init__(self) -> None:
        self._keys: dict[bytes, SigningKey] = {}
        self._session: Session | None = None

    def clear(self) -> None:
        self._keys.clear()

    def get(self, session: Session, cryptoki: Cryptoki, key_id: bytes, credential_id: str,
            logged_in: Callable[[], bool]) -> SigningKey:
        """The key a signature needs; `logged_in` tells whether a key that is not found
        may be one the PIN would show."""
        if self._session is not session:
            self._keys.clear()
            self._session = session
        cached = self._keys.get(key_id)
        if cached is None:
            cached = self._keys[key_id] = _signing_key(session, cryptoki, key_id,
                                                       credential_id, logged_in)
        return cached


def _signing_key(session: Session, cryptoki: Cryptoki, key_id: bytes, credential_id: str,
                 logged_in: Callable[[], bool]) -> SigningKey:
    session_handle = handle(session)
    handles = cryptoki.find_objects(session_handle, ObjectClass.PRIVATE_KEY, key_id, limit=2)
    if len(handles) > 1:
        raise OperationFailed(f"several private keys share the id {credential_id}")
    if not handles:
        if not logged_in() and (find_objects(session, ObjectClass.PUBLIC_KEY, key_id)
                                or find_objects(session, ObjectClass.CERTIFICATE, key_id)):
            raise NotAuthenticated(f"key {credential_id} shows only after the PIN")
        raise KeyNotFound(credential_id)
    values = cryptoki.attribute_values(session_handle, handles[0], _SIGNING_ATTRIBUTES)
    attrs: dict[Attribute, Any] = {Attribute(kind): value for kind, value in values.items()}
    if Attribute.KEY_TYPE in attrs:
        attrs[Attribute.KEY_TYPE] = _ulong(attrs[Attribute.KEY_TYPE])
    key_type = key_type_of(attrs) or _key_type_elsewhere(session, key_id)
    if key_type is None:
        raise UnsupportedMechanism(
            f"key {credential_id} is of a type or size qsign does not sign with")
    return SigningKey(handles[0], key_type,
                      always_authenticate=attrs.get(Attribute.ALWAYS_AUTHENTICATE,
                                                    b"\0") != b"\0",
                      may_sign=attrs.get(Attribute.SIGN, b"\1") != b"\0")


def _ulong(value: bytes) -> int | None:
    """A CK_ULONG attribute value in the platform's byte order; None if not one."""
    if len(value) != ctypes.sizeof(ctypes.c_ulong):
        return None
    return ctypes.c_ulong.from_buffer_copy(value).value


def _key_type_elsewhere(session: Session, key_id: bytes) -> KeyType | None:
    """The key type from the public key or certificate of the same CKA_ID."""
    group = objects_by_id(session, key_id).get(key_id)
    if group is None:
        return None
    for attrs in group.public:
        key_type = key_type_of(attrs)
        if key_type is not None:
            return key_type
    for attrs in group.certificates:
        key_type = key_type_of_certificate(bytes(attrs[Attribute.VALUE]))
        if key_type is not None:
            return key_type
    return None
