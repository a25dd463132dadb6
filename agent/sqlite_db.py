"""One SQLite file for state that must survive kill -9: WAL, synchronous=FULL, and a
write lock taken at the start of every transaction (BEGIN IMMEDIATE), so that a
read-check-write is atomic across threads and processes and is on disk before the
caller answers anyone (SECURITY #21, #30).

Several stores may share one file (`add_schema`): then their writes can go into one
transaction, and one fsync makes them all durable. A transaction may be committed
without its own fsync (`durable=False`, synchronous=NORMAL): in WAL mode it still
survives kill -9 (the frames are in the WAL file, in the OS page cache) and becomes
power-loss durable with the next synchronous commit on the same file, whose fsync of
the WAL covers every frame before it (sqlite.org/pragma.html#pragma_synchronous,
sqlite.org/wal.html). The caller then owes a durable commit or `sync()` before it
answers anyone.
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

    def __init__(self, path: str | os.PathLike[str], schema: Iterable[str] = ()) -> None:
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
        self._closed = False
        self.add_schema(schema)

    def add_schema(self, schema: Iterable[str]) -> None:
        """CREATE ... IF NOT EXISTS statements of one more store sharing this file."""
        with self.transaction() as cur:
            for statement in schema:
                cur.execute(statement)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK when the body raises. With
        durable=False the commit is not fsynced (see the module docstring)."""
        with self._lock:
            cur = self._conn.cursor()
            if not durable:  # the safety level cannot change inside a transaction
                cur.execute("PRAGMA synchronous=NORMAL")
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            finally:
                if not durable:
                    cur.execute("PRAGMA synchronous=FULL")

    def sync(self) -> None:
        """Make every commit so far power-loss durable: fsync the WAL file (what a
        synchronous=FULL commit does), after a `durable=False` transaction whose
        caller will not follow it with a durable one."""
        with self._lock:
            wal = self.path.with_name(self.path.name + "-wal")
            try:
                fd = os.open(wal, os.O_RDONLY)
            except FileNotFoundError:  # checkpointed and removed: already in the file
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
