"""Documents are stored under their SHA-256 and checked on every read: a changed byte
on disk is an error, never a silently different document."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from portal.blobs import BlobCorrupt, BlobMissing, BlobStore


def test_put_get_and_idempotence(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "docs")
    digest = store.put(b"%PDF-1.7 one")
    assert digest == hashlib.sha256(b"%PDF-1.7 one").hexdigest()
    assert store.put(b"%PDF-1.7 one") == digest
    assert store.get(digest) == b"%PDF-1.7 one"
    path = tmp_path / "docs" / digest[:2] / digest
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_a_flipped_byte_is_detected(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "docs")
    digest = store.put(b"%PDF-1.7 signed")
    path = tmp_path / "docs" / digest[:2] / digest
    data = bytearray(path.read_bytes())
    data[3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BlobCorrupt):
        store.get(digest)


@pytest.mark.parametrize("name", ["0" * 64, "../../etc/passwd", "A" * 64, ""])
def test_unknown_or_malformed_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(BlobMissing):
        BlobStore(tmp_path / "docs").get(name)
