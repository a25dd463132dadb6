"""Capability links: `base64url(payload).base64url(HMAC-SHA256(key, purpose|payload))`.

An invitation link names one signer, a generation (bumped when the signer restarts, so
older links die) and an expiry; a Personal Space link names an e-mail address and an
expiry. The purpose is inside the MAC, so one kind of link never opens the other.
The key is 32 random bytes in a 0600 file in the state directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ground.files import write_atomically


class LinkInvalid(Exception):
    """Tampered, truncated, for another purpose, or not made with our key."""


class LinkExpired(Exception):
    pass


class Purpose(StrEnum):
    INVITE = "invite"
    SPACE = "space"


@dataclass(frozen=True)
class Link:
    purpose: Purpose
    subject: str  # a signer id or an e-mail address
    generation: int
    expires_at: int  # Unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("link key: at least 32 bytes")
        self._key = key

    @classmethod
    def from_state(cls, state_dir: Path) -> LinkSigner:
        path = state_dir / "link.key"
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(path, key)
        return cls(key)

    def _mac(self, purpose: Purpose, payload: bytes) -> bytes:
        return hmac.new(self._key, purpose.value.encode() + b"|" + payload,
                        hashlib.sha256).digest()

    def make(self, purpose: Purpose, subject: str, *, generation: int = 0,
             expires_at: int) -> str:
        payload = json.dumps([subject, generation, expires_at],
                             separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(purpose, payload))}"

    def open(self, purpose: Purpose, token: str, *, now: float | None = None) -> Link:
        """The link's content, after its MAC (constant-time) and expiry are checked."""
        body, sep, mac = token.partition(".")
        if not sep or len(token) > 512:
            raise LinkInvalid("malformed link")
        try:
            payload, tag = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise LinkInvalid("malformed link") from None
        if not hmac.compare_digest(tag, self._mac(purpose, payload)):
            raise LinkInvalid("link signature does not verify")
        try:
            fields: Any = json.loads(payload)
            subject, generation, expires_at = fields
        except (ValueError, TypeError):
            raise LinkInvalid("malformed link payload") from None
        if not (isinstance(subject, str) and isinstance(generation, int)
                and isinstance(expires_at, int)):
            raise LinkInvalid("malformed link payload")
        if (time.time() if now is None else now) >= expires_at:
            raise LinkExpired()
        return Link(purpose, subject, generation, expires_at)
