"""One SQLite file for state that must survive kill -9: WAL, synchronous=FULL, and a
write lock taken at the start of every transaction (BEGIN IMMEDIATE), so that a
read-check-write is atomic across threads and processes and is on disk before the
caller answers anyone (SECURITY #21, #30).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteDatabase:
    """A connection shared by threads, one transaction at a time."""

    def __init__(self, path: str | os.PathLike[str], schema: Iterable[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Secrets live here: create the file owner-only before SQLite opens it
        # (SQLite gives the -wal and -shm files the same mode).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None,
                                     check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        with self.transaction() as cur:
            for statement in schema:
                cur.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK when the body raises."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
