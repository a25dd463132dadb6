"""The card's persistent memory: one JSON file per card, written atomically.

A real card's EEPROM keeps keys, PIN verifiers, retry counters and data
objects across power cycles; a torn write leaves the old image. Here every
change goes to a copy of the state, the copy is written to a temp file,
fsynced, renamed over the old file, and the directory fsynced; only then does
the card use the new state.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.faults import TearPlan, TearPoint

STATE_FORMAT = 1
# The PIN space is tiny, so the hash only keeps PINs out of plain sight on disk.
_PBKDF2_ITERATIONS = 20_000


class StateError(Exception):
    """The state file is missing, unreadable or inconsistent."""


@dataclass(slots=True)
class ReferenceData:
    """A PIN or PUK: salted verifier, retry counter, whether it is the factory value."""

    salt: bytes
    digest: bytes
    retries_left: int
    max_retries: int
    is_default: bool

    @classmethod
    def create(cls, padded: bytes, max_retries: int, *, is_default: bool) -> ReferenceData:
        salt = secrets.token_bytes(16)
        return cls(salt, _digest(salt, padded), max_retries, max_retries, is_default)

    def matches(self, padded: bytes) -> bool:
        return hmac.compare_digest(self.digest, _digest(self.salt, padded))

    def set_value(self, padded: bytes, *, is_default: bool = False) -> None:
        self.salt = secrets.token_bytes(16)
        self.digest = _digest(self.salt, padded)
        self.is_default = is_default


def _digest(salt: bytes, value: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", value, salt, _PBKDF2_ITERATIONS)


@dataclass(slots=True)
class KeyRecord:
    """An asymmetric key in a slot. `private_key` is PKCS#8 DER."""

    algorithm: int
    private_key: bytes
    pin_policy: int
    touch_policy: int
    origin: int


@dataclass(slots=True)
class ManagementKey:
    algorithm: int
    key: bytes
    is_default: bool


@dataclass(slots=True)
class CardState:
    serial: int
    profile: str
    firmware_version: tuple[int, int, int]
    pin: ReferenceData
    puk: ReferenceData
    management_key: ManagementKey
    attestation_key: KeyRecord
    keys: dict[int, KeyRecord] = field(default_factory=dict)
    objects: dict[int, bytes] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["format"] = STATE_FORMAT
        raw["keys"] = {f"{slot:02X}": rec for slot, rec in raw["keys"].items()}
        raw["objects"] = {f"{tag:X}": value for tag, value in raw["objects"].items()}
        return _bytes_to_hex(raw)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CardState:
        if raw.get("format") != STATE_FORMAT:
            raise StateError(f"unsupported state format {raw.get('format')!r}")
        try:
            return cls(
                serial=int(raw["serial"]),
                profile=str(raw["profile"]),
                firmware_version=_version(raw["firmware_version"]),
                pin=_reference(raw["pin"]),
                puk=_reference(raw["puk"]),
                management_key=ManagementKey(
                    int(raw["management_key"]["algorithm"]),
                    bytes.fromhex(raw["management_key"]["key"]),
                    bool(raw["management_key"]["is_default"]),
                ),
                attestation_key=_key(raw["attestation_key"]),
                keys={int(slot, 16): _key(rec) for slot, rec in raw["keys"].items()},
                objects={int(tag, 16): bytes.fromhex(v) for tag, v in raw["objects"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # AttributeError: a list where a mapping belongs ("keys": [])
            raise StateError(f"malformed card state: {exc!r}") from exc


def _version(value: Any) -> tuple[int, int, int]:
    major, minor, patch = (int(v) for v in value)
    return major, minor, patch


def _reference(raw: dict[str, Any]) -> ReferenceData:
    return ReferenceData(
        bytes.fromhex(raw["salt"]),
        bytes.fromhex(raw["digest"]),
        int(raw["retries_left"]),
        int(raw["max_retries"]),
        bool(raw["is_default"]),
    )


def _key(raw: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        int(raw["algorithm"]),
        bytes.fromhex(raw["private_key"]),
        int(raw["pin_policy"]),
        int(raw["touch_policy"]),
        int(raw["origin"]),
    )


def _bytes_to_hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _bytes_to_hex(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bytes_to_hex(v) for v in value]
    return value


class CardStore:
    """Owns the state file of one card; `update` is the only way to change it."""

    def __init__(self, path: Path, state: CardState, tear: TearPlan | None = None) -> None:
        self.path = path
        self._state = state
        self._tear = tear

    @property
    def state(self) -> CardState:
        """The committed state. Treat as read-only; change it through `update`."""
        return self._state

    @classmethod
    def load(cls, path: Path, tear: TearPlan | None = None) -> CardStore:
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise StateError(f"{path}: no card state here (run 'qsign card init')") from None
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: absurd nesting
            raise StateError(f"{path}: cannot read card state: {exc}") from exc
        if not isinstance(raw, dict):
            raise StateError(f"{path}: card state is not a JSON object")
        try:
            state = CardState.from_json(raw)
        except StateError as exc:
            raise StateError(f"{path}: {exc}") from exc  # say which card file is bad
        return cls(path, state, tear)

    @classmethod
    def create(cls, path: Path, state: CardState, tear: TearPlan | None = None) -> CardStore:
        store = cls(path, state, tear)
        store._write(state)
        return store

    @contextmanager
    def update(self) -> Iterator[CardState]:
        """Yield a copy to change; on normal exit write it atomically, then adopt it.

        If the body raises, or the write fails, the committed state is unchanged.
        """
        draft = copy.deepcopy(self._state)
        yield draft
        self._write(draft)
        self._state = draft

    def apply(self, change: Callable[[CardState], None]) -> None:
        with self.update() as draft:
            change(draft)

    def _write(self, state: CardState) -> None:
        image = json.dumps(state.to_json(), sort_keys=True, indent=1).encode()
        tear = self._tear
        if tear is not None:
            tear.begin_write()
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            half = len(image) // 2
            _write_all(fd, image[:half])
            if tear is not None:
                tear.reached(TearPoint.TEMP_PARTIAL)
            _write_all(fd, image[half:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if tear is not None:
            tear.reached(TearPoint.TEMP_WRITTEN)
        os.replace(tmp, self.path)
        if tear is not None:
            tear.reached(TearPoint.RENAMED)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
