"""Documents stored content-addressed: the file name is the SHA-256 of the bytes, the
bytes are written atomically (temp, fsync, rename, directory fsync) before any database
row names them, and every read checks the hash again (a flipped bit on disk is an
error, never a silently different document)."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from ground.files import write_atomically

_HEX = re.compile(r"^[0-9a-f]{64}$")


class BlobMissing(Exception):
    def __init__(self, digest: str) -> None:
        super().__init__(f"document {digest} is not in the store")
        self.digest = digest


class BlobCorrupt(Exception):
    def __init__(self, digest: str) -> None:
        super().__init__(f"document {digest} does not match its hash")
        self.digest = digest


class BlobStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, digest: str) -> Path:
        if not _HEX.match(digest):
            raise BlobMissing(digest)
        return self.directory / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():  # same name, same bytes: nothing to do
            path.parent.mkdir(exist_ok=True, mode=0o700)
            write_atomically(path, data)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(digest) from None
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
            raise BlobCorrupt(digest)
        return data
