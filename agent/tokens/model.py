"""The domain model: what a token is and can do, whatever the route to it."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from agent.tokens.errors import CredentialIdInvalid


class KeyType(StrEnum):
    EC_P256 = "EC_P256"
    EC_P384 = "EC_P384"
    RSA_2048 = "RSA_2048"

    @property
    def is_ec(self) -> bool:
        return self is not KeyType.RSA_2048

    @property
    def size(self) -> int:
        return _KEY_SIZES[self]


class HashAlgorithm(StrEnum):
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZES[self]

    @property
    def digest_info_prefix(self) -> bytes:
        """DER DigestInfo up to the digest (RFC 8017 §9.2 note 1), for PKCS#1 v1.5."""
        return _DIGEST_INFO_PREFIXES[self]


_KEY_SIZES = {KeyType.EC_P256: 256, KeyType.EC_P384: 384, KeyType.RSA_2048: 2048}
_DIGEST_SIZES = {HashAlgorithm.SHA256: 32, HashAlgorithm.SHA384: 48, HashAlgorithm.SHA512: 64}
_DIGEST_INFO_PREFIXES = {
    HashAlgorithm.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    HashAlgorithm.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    HashAlgorithm.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}


class Padding(StrEnum):
    ECDSA = "ECDSA"
    PKCS1V15 = "PKCS1V15"
    PSS = "PSS"  # MGF1 with the same hash, salt as long as the hash (RFC 8017 §9.1)


@dataclass(frozen=True, slots=True)
class SignatureAlgorithm:
    padding: Padding
    hash: HashAlgorithm

    @classmethod
    def parse(cls, name: str) -> SignatureAlgorithm:
        """'ECDSA_SHA256', 'RSA_PKCS1V15_SHA384', 'RSA_PSS_SHA512'."""
        parts = name.upper().split("_")
        try:
            if parts[0] == "ECDSA" and len(parts) == 2:
                return cls(Padding.ECDSA, HashAlgorithm(parts[1]))
            if parts[0] == "RSA" and len(parts) == 3:
                return cls(Padding(parts[1]), HashAlgorithm(parts[2]))
        except ValueError:
            pass
        raise ValueError(f"unknown signature algorithm {name!r}")

    def __str__(self) -> str:
        prefix = "ECDSA" if self.padding is Padding.ECDSA else f"RSA_{self.padding.value}"
        return f"{prefix}_{self.hash.value}"

    def fits(self, key_type: KeyType) -> bool:
        return (self.padding is Padding.ECDSA) == key_type.is_ec


class Route(StrEnum):
    """How the agent reaches a token."""

    PIV_PCSC = "piv-pcsc"
    PKCS11 = "pkcs11"


@dataclass(frozen=True, slots=True)
class RouteInfo:
    kind: Route
    reader: str | None = None  # PC/SC reader name
    module: str | None = None  # PKCS#11 module path
    slot: int | None = None  # PKCS#11 slot id


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    label: str
    serial: str
    manufacturer: str
    model: str
    reader: str | None
    routes: tuple[RouteInfo, ...]
    protected_authentication_path: bool = False  # PIN pad: never send a PIN
    atr: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class Credential:
    """A private key on the token, with its certificate when the token holds one."""

    id: str  # key reference: PIV slot ("9C") or PKCS#11 CKA_ID hex
    label: str
    key_type: KeyType
    certificate: bytes | None  # DER
    chain: tuple[bytes, ...] = ()
    pin_always: bool = False  # the PIN must be given for each signature
    can_attest: bool = False

    @property
    def has_certificate(self) -> bool:
        return self.certificate is not None


@dataclass(frozen=True, slots=True)
class PinStatus:
    retries_left: int | None  # None: the token does not say
    blocked: bool
    puk_retries_left: int | None = None
    puk_blocked: bool = False
    is_default: bool | None = None


class EventKind(Enum):
    INSERTED = "inserted"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class TokenEvent:
    kind: EventKind
    token_id: str
    info: TokenInfo | None = None
    detail: dict[str, str] = field(default_factory=dict)


class Token(abc.ABC):
    """One token through one route. Methods block; the registry runs them on the
    token's own worker thread, so calls never overlap on one token."""

    @property
    @abc.abstractmethod
    def info(self) -> TokenInfo: ...

    @abc.abstractmethod
    def credentials(self) -> list[Credential]: ...

    @abc.abstractmethod
    def pin_status(self) -> PinStatus: ...

    @abc.abstractmethod
    def verify_pin(self, pin: str) -> None:
        """Have the token check the PIN, then reset its security status: nothing stays
        unlocked for another application. Raise InvalidPin(attempts_left) / PinBlocked;
        never retried here."""

    @abc.abstractmethod
    def sign_digest(self, credential_id: str, digest: bytes, algorithm: SignatureAlgorithm,
                    pin: str | None = None) -> bytes:
        """Sign a precomputed digest. ECDSA answers DER (X9.62 Ecdsa-Sig-Value), RSA the
        raw signature. With `pin`, the PIN is verified right before the signature and
        the token's security status is reset right after."""

    def sign_digests(self, credential_id: str,
                     digests: Sequence[tuple[bytes, SignatureAlgorithm]],
                     pin: str | None = None) -> list[bytes]:
        """`sign_digest` for several digests in one call (one job on the worker). With
        `pin`, the PIN serves these signatures only and the security status is reset right
        after the last; by default each is `sign_digest`'s, with its own PIN check."""
        return [self.sign_digest(credential_id, digest, algorithm, pin=pin)
                for digest, algorithm in digests]

    @abc.abstractmethod
    def generate_key(self, credential_id: str, key_type: KeyType, pin: str | None = None
                     ) -> bytes:
        """Generate a key pair on the token; answer its SubjectPublicKeyInfo (DER).
        With `pin` the token checks it before anything changes (PKCS#11 logs in with it;
        PIV verifies it, then uses its management key) and is locked again after."""

    def public_key(self, credential_id: str) -> bytes | None:
        """The key's SubjectPublicKeyInfo (DER) as the token tells it without the PIN;
        None when this route cannot tell."""
        return None

    @abc.abstractmethod
    def attest(self, credential_id: str) -> list[bytes]:
        """Certificates (DER) proving the key was generated on the token: the key's
        attestation certificate first, then the device certificate."""

    @abc.abstractmethod
    def put_certificate(self, credential_id: str, certificate: bytes, pin: str | None = None
                        ) -> None: ...

    @abc.abstractmethod
    def change_pin(self, old_pin: str, new_pin: str) -> None: ...

    @abc.abstractmethod
    def unblock_pin(self, puk: str, new_pin: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook; most routes hold nothing
        """Release the route's resources (handles, sessions)."""


def split_credential(credential_id: str) -> tuple[str, str]:
    """'TOKEN_ID/KEY_ID' -> (token id, key id): how the agent names a credential."""
    token_id, sep, key_id = credential_id.rpartition("/")
    if not sep or not token_id or not key_id:
        raise CredentialIdInvalid()
    return token_id, key_id
