"""The signature journal: every signature the agent has a token make is written
(SQLite, WAL, synchronous=FULL) before anyone learns it was made.

A signature made under a SAD stays in the journal until a signHash call presents
that SAD; a retry with the same idempotency key gets the same signatures back,
so a lost answer never leads to a second signature (SECURITY #30). Like the SAD, a
retry is bound to the origin and the credential that made the signatures: a key is
looked up only among their own deliveries (SECURITY #38), and forgotten when the
origin loses the agent's trust (`forget_replays`, SECURITY #37).

The journal's file (DIR/journal.sqlite) is also the home of the SADs
(`agent.policy.SadIssuer`) and of the OTP state (`agent.identity.otp.OtpStore`):
one file, so that issuing a SAD and journaling its signatures, or spending a SAD
and delivering them, is one transaction and one fsync.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ground.sql import Cursor, Database

DATABASE = "journal.sqlite"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS signatures ("
    "id INTEGER PRIMARY KEY, sad_hash TEXT NOT NULL, origin TEXT NOT NULL, "
    "credential TEXT NOT NULL, hash BLOB NOT NULL, algorithm TEXT NOT NULL, "
    "signature BLOB NOT NULL, signed_at TEXT NOT NULL, delivered_at TEXT, "
    "idempotency_key TEXT, UNIQUE (sad_hash, hash))",
    "CREATE INDEX IF NOT EXISTS by_key ON signatures (idempotency_key)",
)


class JournalError(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    sad_hash: str
    origin: str
    credential: str
    hash: bytes
    algorithm: str
    signature: bytes
    signed_at: dt.datetime
    delivered_at: dt.datetime | None
    idempotency_key: str | None


class SignatureJournal:
    def __init__(self, directory: Path) -> None:
        self.db = Database.sqlite(directory / DATABASE, _SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _cursor(self, cur: Cursor | None) -> Iterator[Cursor]:
        """The caller's transaction when it passes one, else a transaction of our own."""
        if cur is not None:
            yield cur
            return
        with self.db.transaction() as own:
            yield own

    def record(self, *, sad_hash: str, origin: str, credential: str, algorithm: str,
               signatures: Sequence[tuple[bytes, bytes]],
               cur: Cursor | None = None) -> None:
        """Journal (hash, signature) pairs made under one SAD, in one transaction."""
        now = _now().isoformat()
        with self._cursor(cur) as c:
            c.executemany(
                "INSERT INTO signatures (sad_hash, origin, credential, hash, algorithm, "
                "signature, signed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(sad_hash, origin, credential, h, algorithm, s, now) for h, s in signatures])

    def deliver(self, *, sad_hash: str, hashes: Sequence[bytes], idempotency_key: str | None,
                algorithm: str | None = None, cur: Cursor | None = None
                ) -> list[bytes]:
        """The signatures for `hashes` under `sad_hash`, marked delivered. With
        `algorithm`, each must have been made with it."""
        now = _now().isoformat()
        with self._cursor(cur) as c:
            found = []
            for h in hashes:
                c.execute("SELECT signature, algorithm FROM signatures "
                          "WHERE sad_hash = ? AND hash = ?", (sad_hash, h))
                row = c.fetchone()
                if row is None:
                    raise JournalError("no signature was made for this hash under this SAD")
                if algorithm is not None and row[1] != algorithm:
                    raise JournalError("signature algorithm differs from the authorisation's")
                found.append(bytes(row[0]))
            c.executemany(
                "UPDATE signatures SET delivered_at = ?, idempotency_key = ? "
                "WHERE sad_hash = ? AND hash = ?",
                [(now, idempotency_key, sad_hash, h) for h in hashes])
            return found

    def replay(self, *, idempotency_key: str, sad_hash: str, hashes: Sequence[bytes],
               origin: str, credential: str, cur: Cursor | None = None
               ) -> list[bytes] | None:
        """A retried signHash: the signatures already delivered under this key to this
        origin for this credential, if the request is the same; None if the key is new
        to them.
        Another origin's (or credential's) key is new here: its presentation goes on to
        the SAD's own checks, which refuse it."""
        with self._cursor(cur) as c:
            c.execute("SELECT sad_hash, hash, signature FROM signatures "
                      "WHERE idempotency_key = ? AND origin = ? AND credential = ?",
                      (idempotency_key, origin, credential))
            rows = c.fetchall()
        if not rows:
            return None
        delivered = {bytes(h): bytes(s) for sad, h, s in rows
                     if hmac.compare_digest(str(sad).encode(), sad_hash.encode())}
        if len(delivered) != len(rows) or set(delivered) != set(hashes):
            raise JournalError("this idempotency key was used for another request")
        return [delivered[h] for h in hashes]

    def forget_replays(self, origin: str, cur: Cursor | None = None) -> int:
        """No more retries for `origin` (its pairing was revoked, or the policy dropped
        it): what it was given stays journaled, but is never answered again."""
        with self._cursor(cur) as c:
            c.execute("UPDATE signatures SET idempotency_key = NULL "
                      "WHERE origin = ? AND idempotency_key IS NOT NULL", (origin,))
            return c.rowcount

    def entries(self) -> list[Entry]:
        with self.db.transaction() as cur:
            cur.execute("SELECT sad_hash, origin, credential, hash, algorithm, signature, "
                        "signed_at, delivered_at, idempotency_key FROM signatures ORDER BY id")
            return [Entry(r[0], r[1], r[2], bytes(r[3]), r[4], bytes(r[5]),
                          dt.datetime.fromisoformat(r[6]),
                          dt.datetime.fromisoformat(r[7]) if r[7] else None, r[8])
                    for r in cur.fetchall()]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
