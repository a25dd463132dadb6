"""Schema migrations for the databases of ground.sql (the portal's, the CA registry's):
yoyo-migrations applies a package's numbered SQL files in order and records each in a
version table, on SQLite and on PostgreSQL alike.

The SQL files are the schema. They are written in PostgreSQL's types; `BYTEA` becomes
`BLOB` on SQLite, as in ground.sql. A database made before migrations (every table of
the first migration present, no version table) is adopted: the first migration is
marked applied without running, and the later ones run. Each schema has its own
tables (`<name>_migrations`, `_log`, `_yoyo`), so two schemas may share a database.
One process migrates at a time: an flock on the SQLite file's directory, an advisory
lock on PostgreSQL; both end with the process that held them.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from yoyo import exceptions as yoyo_errors
from yoyo import read_migrations
from yoyo.backends.base import DatabaseBackend
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.backends.core.sqlite3 import SQLiteBackend
from yoyo.connections import DatabaseURI, parse_uri

from ground.sql import Database, DatabaseError

_BYTEA = re.compile(r"\bBYTEA\b")
_CREATE_TABLE = re.compile(r"^\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+)",
                           re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Schema:
    """One component's migrations: the SQL files in `package`'s folder `migrations/`,
    named `<name>-NNNN-<what>.sql`, the first being the schema as the code made it before
    migrations."""

    name: str
    package: str

    @property
    def version_table(self) -> str:
        return f"{self.name}_migrations"

    def migrations(self) -> Any:
        """yoyo's MigrationList, in file-name order."""
        return read_migrations(f"package:{self.package}:migrations")


@dataclass(frozen=True)
class Migrated:
    """What `migrate` did: the migrations it ran, whether it adopted a database made
    before migrations, and the latest migration (the head) the database is now at."""

    applied: tuple[str, ...]
    adopted: bool
    head: str

    def __str__(self) -> str:
        done = f"ran {', '.join(self.applied)}" if self.applied else "nothing to run"
        adopted = "adopted the schema from before migrations; " if self.adopted else ""
        return f"{adopted}{done}; at {self.head}"


def open_migrated(url: str | None, default_path: Path, schema: Schema) -> Database:
    """ground.sql's `Database.open(url, default_path)`, at the head of `schema`'s
    migrations: what a service opens at start."""
    database = _open(url, default_path)
    try:
        _apply(url, default_path, schema)
    except BaseException:
        database.close()
        raise
    return database


def migrate(url: str | None, default_path: Path, schema: Schema) -> Migrated:
    """Bring the database at `url` (as for `Database.open`; None: the SQLite file
    `default_path`) to the head of `schema`'s migrations, as `qsign ... migrate` does."""
    _open(url, default_path).close()
    return _apply(url, default_path, schema)


def _open(url: str | None, default_path: Path) -> Database:
    """`Database.open`; on SQLite one opening at a time: the first one switches a new
    file to WAL, which a concurrent opening would find locked."""
    path = _sqlite_path(url, default_path)
    if path is None:
        return Database.open(url, default_path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _directory_lock(path.parent):
        return Database.open(url, default_path)


def _sqlite_path(url: str | None, default_path: Path) -> Path | None:
    """The SQLite file `url` names (as for `Database.open`); None for another URL."""
    if not url:
        return default_path
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An flock on the SQLite file's directory, released with this process at the
    latest. The directory, not the file: closing another descriptor on the database
    file would drop SQLite's own POSIX locks in this process."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _apply(url: str | None, default_path: Path, schema: Schema) -> Migrated:
    try:
        with _backend(url, default_path, schema) as backend, backend.lock():
            return _migrate(backend, schema)
    except (yoyo_errors.BadMigration, yoyo_errors.MigrationConflict,
            yoyo_errors.LockTimeout) as exc:
        raise DatabaseError(f"{schema.name} migrations: {exc}") from exc
    except (sqlite3.Error, psycopg.Error) as exc:
        raise DatabaseError(f"{schema.name} migrations failed: {exc}") from exc


def applied(url: str | None, default_path: Path, schema: Schema) -> list[str]:
    """The ids recorded in `schema`'s version table, oldest first."""
    try:
        with _backend(url, default_path, schema) as backend:
            if schema.version_table not in backend.list_tables():
                return []
            cursor = backend.execute(f"SELECT migration_id FROM {schema.version_table} "  # noqa: S608
                                     "ORDER BY applied_at_utc, migration_id")
            return [str(row[0]) for row in cursor.fetchall()]
    except (sqlite3.Error, psycopg.Error) as exc:
        raise DatabaseError(f"{schema.name} migrations: {exc}") from exc


def _migrate(backend: Any, schema: Schema) -> Migrated:
    migrations = schema.migrations()
    if not migrations:
        raise DatabaseError(f"{schema.name}: no migrations in {schema.package}")
    adopted = False
    tables = set(backend.list_tables())
    if schema.version_table not in tables:
        baseline = _tables_made_by(migrations[0])
        present = baseline & tables
        if present == baseline:
            backend.mark_migrations([migrations[0]])  # made by the code before migrations
            adopted = True
        elif present:
            raise DatabaseError(
                f"the database holds {', '.join(sorted(present))} but not "
                f"{', '.join(sorted(baseline - present))}: not a {schema.name} "
                "database this version knows")
    pending = backend.to_apply(migrations)
    backend.apply_migrations(pending)
    return Migrated(tuple(m.id for m in pending), adopted, migrations[-1].id)


def _tables_made_by(migration: Any) -> frozenset[str]:
    migration.load()
    return frozenset(name.lower() for name in _CREATE_TABLE.findall(migration.source))


@contextmanager
def _backend(url: str | None, default_path: Path, schema: Schema) -> Iterator[Any]:
    backend: DatabaseBackend
    if url and url.startswith(("postgresql://", "postgres://")):
        backend = _PostgreSQL(parse_uri(url), schema.version_table)
    else:
        path = _sqlite_path(url, default_path)
        if path is None or not path.is_file():  # Database.open makes it, owner-only
            raise DatabaseError(f"no database file {path}")
        backend = _SQLite(DatabaseURI("sqlite", None, None, None, None, str(path), {}),
                          schema.version_table)
    try:
        backend.init_database()
        yield backend
    finally:
        backend.connection.close()


class _Named:
    """Per-schema names for yoyo's own tables (its class attributes are shared)."""

    _is_locked: bool = False

    def __init__(self, dburi: DatabaseURI, migration_table: str) -> None:
        super().__init__(dburi, migration_table)  # type: ignore[call-arg]
        self.log_table = f"{migration_table}_log"
        self.version_table = f"{migration_table}_yoyo"

    def create_lock_table(self) -> None:
        """Not used: `lock` below ends with its process, a lock row would not."""

    def get_log_data(self, migration: Any = None, operation: str = "apply"
                     ) -> dict[str, Any]:
        """yoyo's log row without its DNS lookup (socket.getfqdn) and without needing a
        passwd entry (getpass.getuser): a service's sandbox may have neither."""
        return {"id": str(uuid.uuid4()), "operation": operation,
                "migration_id": migration.id if migration else None,
                "migration_hash": migration.hash if migration else None,
                "username": os.environ.get("USER") or str(os.getuid()),
                "hostname": socket.gethostname(),
                "created_at_utc": dt.datetime.now(dt.UTC).replace(tzinfo=None)}


class _SQLite(_Named, SQLiteBackend):  # type: ignore[misc]
    def connect(self, dburi: DatabaseURI) -> sqlite3.Connection:
        return sqlite3.connect(dburi.database, factory=_SqliteConnection,
                               isolation_level=None, timeout=30)

    def __enter__(self) -> _SQLite:
        return self  # yoyo's own swaps sqlite3's process-wide adapters meanwhile

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    @contextmanager
    def lock(self, timeout: int = 10) -> Iterator[None]:
        if self._is_locked:
            yield
            return
        with _directory_lock(Path(self.uri.database).parent):
            self._is_locked = True
            try:
                yield
            finally:
                self._is_locked = False


class _PostgreSQL(_Named, PostgresqlPsycopgBackend):  # type: ignore[misc]
    @contextmanager
    def lock(self, timeout: int = 10) -> Iterator[None]:
        if self._is_locked:
            yield
            return
        key = int.from_bytes(hashlib.sha256(self.migration_table.encode()).digest()[:8],
                             "big", signed=True)
        self.execute("SELECT pg_advisory_lock(:key)", {"key": key})  # session-level
        self._is_locked = True
        try:
            yield
        finally:
            self._is_locked = False
            self.execute("SELECT pg_advisory_unlock(:key)", {"key": key})


class _SqliteCursor(sqlite3.Cursor):
    """BYTEA as BLOB, and yoyo's datetimes as ISO text without sqlite3's global
    adapters."""

    def execute(self, sql: str, parameters: Any = (), /) -> _SqliteCursor:
        if isinstance(parameters, dict):
            parameters = {k: _plain(v) for k, v in parameters.items()}
        else:
            parameters = tuple(_plain(v) for v in parameters)
        super().execute(_BYTEA.sub("BLOB", sql), parameters)
        return self


class _SqliteConnection(sqlite3.Connection):
    def cursor(self, factory: Any = _SqliteCursor) -> Any:
        return super().cursor(factory)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value
