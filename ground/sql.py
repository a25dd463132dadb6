"""One database layer for the services that run on SQLite by default and on PostgreSQL
when given a `postgresql://` URL (DESIGN "Persistence"): the CA registry and the portal.

SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE (the write lock is taken at the start, so
a read-check-write cannot lose an update). PostgreSQL: psycopg 3, one transaction per
`transaction()` block. Statements use '?' placeholders and SQLite/PostgreSQL common SQL;
`BYTEA` in a schema becomes `BLOB` on SQLite.

The agent keeps its state here too, in one SQLite file its stores share (`add_schema`),
so their writes can go into one transaction and one fsync makes them all durable. A
transaction may be committed without its own fsync (`durable=False`, synchronous=NORMAL):
in WAL mode it still survives kill -9 (the frames are in the WAL file, in the OS page
cache) and becomes power-loss durable with the next synchronous commit on the same file,
whose fsync of the WAL covers every frame before it (sqlite.org/pragma.html#pragma_
synchronous, sqlite.org/wal.html). The caller then owes a durable commit or `sync()`
before it answers anyone. PostgreSQL commits are always durable.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol


class DatabaseError(Exception):
    """The database cannot be reached or refused the schema."""


class Cursor(Protocol):
    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Any]) -> Any: ...

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database:
    """One connection used from any thread, one transaction at a time."""

    def __init__(self, connect: Callable[[], Any], dialect: str,
                 schema: Iterable[str] = (), *, path: Path | None = None) -> None:
        self.dialect = dialect
        self.path = path  # the SQLite file; None on PostgreSQL
        self._lock = threading.RLock()
        self._conn = connect()
        self.add_schema(schema)

    def add_schema(self, schema: Iterable[str]) -> None:
        """CREATE ... IF NOT EXISTS statements, e.g. of one more store sharing this file."""
        with self.transaction() as cur:
            for statement in schema:
                cur.execute(statement if self.dialect == "postgresql"
                            else statement.replace("BYTEA", "BLOB"))

    @classmethod
    def open(cls, url: str | None, default_path: Path, schema: Iterable[str] = ()
             ) -> Database:
        """`postgresql://...`, `sqlite:///path`, or None for `default_path`."""
        if url and url.startswith(("postgresql://", "postgres://")):
            import psycopg

            def connect_pg() -> Any:
                try:
                    return psycopg.connect(url, autocommit=False)
                except psycopg.Error as exc:
                    raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc

            return cls(connect_pg, "postgresql", schema)
        if url and not url.startswith("sqlite:///"):
            raise DatabaseError(f"unsupported database URL {url.split(':', 1)[0]!r}: "
                                "use postgresql://... or sqlite:///path")
        path = Path(url.removeprefix("sqlite:///")) if url else default_path

        def connect_sqlite() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # owner-only from birth
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn

        return cls(connect_sqlite, "sqlite", schema, path=path)

    @classmethod
    def sqlite(cls, path: str | os.PathLike[str], schema: Iterable[str] = ()) -> Database:
        """The SQLite file at `path`, made owner-only (the agent's state)."""
        return cls.open(None, Path(path), schema)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def integrity_errors(self) -> tuple[type[Exception], ...]:
        """What a violated UNIQUE / FOREIGN KEY constraint raises on this database."""
        if self.dialect == "postgresql":
            import psycopg

            return (psycopg.errors.IntegrityError,)
        return (sqlite3.IntegrityError,)

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Cursor]:
        """BEGIN ... COMMIT; ROLLBACK when the body raises. durable=False: the SQLite
        commit is not fsynced (see the module docstring)."""
        with self._lock:
            cur = self._conn.cursor()
            relaxed = not durable and self.dialect == "sqlite"
            if relaxed:  # the safety level cannot change inside a transaction
                cur.execute("PRAGMA synchronous=NORMAL")
            try:
                if self.dialect == "sqlite":
                    cur.execute("BEGIN IMMEDIATE")
                try:
                    yield _Translating(cur, self.dialect == "postgresql")
                except BaseException:
                    if self.dialect == "postgresql":
                        self._conn.rollback()
                    else:
                        cur.execute("ROLLBACK")
                    raise
                if self.dialect == "postgresql":
                    self._conn.commit()
                else:
                    cur.execute("COMMIT")
            finally:
                if relaxed:
                    cur.execute("PRAGMA synchronous=FULL")

    def sync(self) -> None:
        """Make every commit so far power-loss durable: fsync the WAL file (what a
        synchronous=FULL commit does), after a `durable=False` transaction whose caller
        will not follow it with a durable one. Nothing to do on PostgreSQL."""
        if self.dialect == "postgresql":
            return
        if self.path is None:
            raise DatabaseError("sync() needs the SQLite file's path")
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


class _Translating:
    """A cursor taking '?' placeholders on both databases."""

    def __init__(self, cursor: Any, postgresql: bool) -> None:
        self._cursor = cursor
        self._postgresql = postgresql

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._cursor.execute(sql.replace("?", "%s") if self._postgresql else sql,
                                    params)

    def executemany(self, sql: str, params: Iterable[Any]) -> Any:
        return self._cursor.executemany(
            sql.replace("?", "%s") if self._postgresql else sql, params)

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())
