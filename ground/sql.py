"""One database layer for the services that run on SQLite by default and on PostgreSQL
when given a `postgresql://` URL (DESIGN "Persistence"): the CA registry and the portal.

SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE (the write lock is taken at the start, so
a read-check-write cannot lose an update). PostgreSQL: psycopg 3, one transaction per
`transaction()` block. Statements use '?' placeholders and SQLite/PostgreSQL common SQL;
`BYTEA` in a schema becomes `BLOB` on SQLite.
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

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database:
    """One connection used from any thread, one transaction at a time."""

    def __init__(self, connect: Callable[[], Any], dialect: str,
                 schema: Iterable[str] = ()) -> None:
        self.dialect = dialect
        self._lock = threading.RLock()
        self._conn = connect()
        with self.transaction() as cur:
            for statement in schema:
                cur.execute(statement if dialect == "postgresql"
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

        return cls(connect_sqlite, "sqlite", schema)

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
    def transaction(self) -> Iterator[Cursor]:
        """BEGIN ... COMMIT; ROLLBACK when the body raises."""
        with self._lock:
            cur = self._conn.cursor()
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


class _Translating:
    """A cursor taking '?' placeholders on both databases."""

    def __init__(self, cursor: Any, postgresql: bool) -> None:
        self._cursor = cursor
        self._postgresql = postgresql

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._cursor.execute(sql.replace("?", "%s") if self._postgresql else sql,
                                    params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())
