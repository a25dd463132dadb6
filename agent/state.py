"""The agent's state directory: SQLite (WAL, synchronous=FULL) for paired origins and
pairing requests. The CLI (`qsign agent approve`, `qsign agent origins`) writes the
same database the running agent reads, so approval needs no other channel.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ground.sql import Cursor, Database

DATABASE = "agent.sqlite"
PAIRING_TTL = dt.timedelta(minutes=5)
# Codes a person reads from a page and types: no 0/O, 1/I/L.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
MAX_PENDING = 20  # waiting pairing requests, all origins together


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS paired_origins ("
    "origin TEXT PRIMARY KEY, paired_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pairing_requests ("
    "code TEXT PRIMARY KEY, origin TEXT NOT NULL, "
    "expires_at TEXT NOT NULL, approved INTEGER NOT NULL DEFAULT 0)",
)


class PairingError(Exception):
    """A pairing code is unknown, expired or already used."""


class PairingBusy(Exception):
    """Too many pairing requests wait for a person already (SECURITY #41)."""


@dataclass(frozen=True)
class PairedOrigin:
    origin: str
    paired_at: dt.datetime


class AgentState:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        self.directory = directory
        self._db = Database.sqlite(directory / DATABASE, _SCHEMA)
        self.database = self._db  # shared with agent.confirmations (same file)
        self._transaction = self._db.transaction

    def close(self) -> None:
        self._db.close()

    # Paired origins -------------------------------------------------------------------

    def is_paired(self, origin: str) -> bool:
        with self._transaction() as cur:
            cur.execute("SELECT 1 FROM paired_origins WHERE origin = ?", (origin,))
            return cur.fetchone() is not None

    def paired(self) -> list[PairedOrigin]:
        with self._transaction() as cur:
            cur.execute("SELECT origin, paired_at FROM paired_origins ORDER BY origin")
            return [PairedOrigin(o, dt.datetime.fromisoformat(t)) for o, t in cur.fetchall()]

    def revoke(self, origin: str) -> bool:
        with self._transaction() as cur:
            cur.execute("DELETE FROM paired_origins WHERE origin = ?", (origin,))
            return cur.rowcount > 0

    # Pairing ----------------------------------------------------------------------------

    def request_pairing(self, origin: str, now: dt.datetime | None = None, *,
                        max_pending: int = MAX_PENDING) -> str:
        """A short code for `origin`, to be approved outside the page. An origin holds
        one waiting code (a new request replaces it); at most `max_pending` wait in all,
        else PairingBusy: a flood of origins cannot bury a person's list."""
        now = now or _now()
        code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
        with self._transaction() as cur:
            cur.execute("DELETE FROM pairing_requests WHERE expires_at < ?", (now.isoformat(),))
            cur.execute("DELETE FROM pairing_requests WHERE origin = ? AND approved = 0",
                        (origin,))
            cur.execute("SELECT COUNT(*) FROM pairing_requests WHERE approved = 0")
            if cur.fetchone()[0] >= max_pending:
                raise PairingBusy("too many pairing requests are waiting")
            cur.execute("INSERT INTO pairing_requests (code, origin, expires_at) VALUES "
                        "(?, ?, ?)", (code, origin, (now + PAIRING_TTL).isoformat()))
        return code

    def pending(self, now: dt.datetime | None = None) -> list[tuple[str, str]]:
        """(code, origin) of the requests waiting for a person."""
        now = now or _now()
        with self._transaction() as cur:
            cur.execute("SELECT code, origin FROM pairing_requests WHERE approved = 0 AND "
                        "expires_at >= ? ORDER BY expires_at", (now.isoformat(),))
            return [(c, o) for c, o in cur.fetchall()]

    def approve(self, code: str, now: dt.datetime | None = None) -> str:
        """The person typed `code`: pair its origin. Answers the origin."""
        now = now or _now()
        with self._transaction() as cur:
            stored, origin = _find(cur, code, now)
            cur.execute("UPDATE pairing_requests SET approved = 1 WHERE code = ?", (stored,))
            cur.execute("INSERT INTO paired_origins (origin, paired_at) VALUES (?, ?) "
                        "ON CONFLICT (origin) DO NOTHING", (origin, now.isoformat()))
            return origin

    def deny(self, code: str, now: dt.datetime | None = None) -> str:
        """The person refused `code`: forget the request. Answers its origin."""
        now = now or _now()
        with self._transaction() as cur:
            stored, origin = _find(cur, code, now)
            cur.execute("DELETE FROM pairing_requests WHERE code = ?", (stored,))
            return origin


def _find(cur: Cursor, code: str, now: dt.datetime) -> tuple[str, str]:
    """The waiting request with this code (compared in constant time), or PairingError."""
    typed = code.strip().upper().replace("-", "").replace(" ", "")
    cur.execute("SELECT code, origin, expires_at, approved FROM pairing_requests")
    for stored, origin, expires, approved in cur.fetchall():
        if not hmac.compare_digest(stored.encode(), typed.encode()):
            continue
        if approved or dt.datetime.fromisoformat(expires) < now:
            raise PairingError("this code has expired or was already used")
        return str(stored), str(origin)
    raise PairingError("no pairing request has this code")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
