"""The portal's audit log (issue 15): an append-only, hash-chained record of every
security-relevant action (sign-ins, role changes, token creation, parameter changes,
downloads, suspensions), kept in the store (portal/migrations/portal-0006-audit.sql).

Each entry's `hash` is SHA-256 over a canonical encoding of its fields and the previous
entry's hash (`prev_hash`; the first entry links to `GENESIS`), so an entry changed,
deleted or moved in the database breaks the chain at that entry: `verify` names the
first bad `seq` (`qsign portal audit verify`). Removing the newest entries leaves a
shorter valid chain: compare the head with one kept elsewhere (`expect=`). The portal
anchors it (`anchor`): every few minutes the head moves forward in a file beside the
database (`<state_dir>/audit.head`) and in the log, which `verify` then checks against.

Appends are serialised across portal processes: one transaction reads the last entry
and inserts the next `seq`; `seq` is the primary key, so of two processes that read the
same last entry one insert fails and that append retries on the new head (SQLite's
BEGIN IMMEDIATE already serialises them; PostgreSQL's READ COMMITTED does not).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ground.files import write_atomically
from ground.sql import Database
from portal.store.records import utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
ANCHOR_FILE = "audit.head"  # in the portal's state directory
ANCHOR_EVERY = 300.0  # seconds between two anchorings
_RETRIES = 100
_BATCH = 1000
_COLUMNS = "seq, at, actor, action, subject, details, prev_hash, hash"


class AuditError(Exception):
    """An append that could not be made (the chain kept moving under it)."""


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str  # ISO 8601, UTC
    actor: str  # who acted: "user:<id>", "service-admin", "signer:<id>", "system"
    action: str  # dotted verb: "session.sign-in", "member.role", "token.create", ...
    subject: str  # what it was done to: "workspace:<id>", "transaction:<id>", ...
    details: str  # canonical JSON text, as hashed
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "subject": self.subject, "details": json.loads(self.details),
                "prevHash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True)
class Head:
    """The newest entry's position and hash: what an anchor keeps (`seq:hash`)."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Head:
        seq, sep, digest = text.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise ValueError(f"an audit head is SEQ:SHA256HEX, not {text!r}")
        return cls(int(seq), digest.lower())


@dataclass(frozen=True)
class VerifyResult:
    """`ok`, the entries read and the head; else the first bad `seq` and why."""

    ok: bool
    entries: int
    head: Head
    first_bad: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit log OK: {self.entries} entries, head {self.head}"
        return f"audit log BROKEN at seq {self.first_bad}: {self.reason}"

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head": str(self.head),
                "firstBad": self.first_bad, "reason": self.reason}


def canonical_details(details: dict[str, Any]) -> str:
    """RFC 8785 (JCS) style for the JSON the log holds: sorted keys, no whitespace, UTF-8."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(seq: int, at: str, actor: str, action: str, subject: str, details: str,
               prev_hash: str) -> str:
    """SHA-256 (FIPS 180-4) over the JCS-style array of the entry's fields."""
    encoded = json.dumps([seq, at, actor, action, subject, details, prev_hash],
                         separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def record(db: Database, *, actor: str, action: str, subject: str,
           details: dict[str, Any], clock: Callable[[], dt.datetime] = utcnow) -> None:
    """Append one entry. Blocking (one short database transaction): call it from a
    handler through `asyncio.to_thread`, or inside work already on a thread."""
    text = canonical_details(details)
    for attempt in range(_RETRIES):
        try:
            with db.transaction() as cur:
                cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                last = cur.fetchone()
                seq, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, last[1])
                at = clock().isoformat()
                cur.execute(f"INSERT INTO audit_log ({_COLUMNS}) "  # noqa: S608
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (seq, at, actor, action, subject, text, prev,
                             entry_hash(seq, at, actor, action, subject, text, prev)))
            return
        except db.integrity_errors():  # another process appended this seq first
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise AuditError(f"audit append of {action!r} lost {_RETRIES} races in a row")


async def arecord(db: Database, *, actor: str, action: str, subject: str,
                  details: dict[str, Any]) -> None:
    """`record` from a request handler: on a worker thread, off the event loop."""
    await asyncio.to_thread(lambda: record(db, actor=actor, action=action,
                                           subject=subject, details=details))


def _rows(db: Database, sql: str, params: tuple[Any, ...]) -> list[Entry]:
    with db.transaction() as cur:
        cur.execute(sql, params)
        return [Entry(int(r[0]), *r[1:]) for r in cur.fetchall()]


def _all(db: Database) -> Iterator[Entry]:
    after = 0
    while True:
        batch = _rows(db, f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? "  # noqa: S608
                      "ORDER BY seq LIMIT ?", (after, _BATCH))
        yield from batch
        if len(batch) < _BATCH:
            return
        after = batch[-1].seq


def entries(db: Database, *, before: int | None = None, limit: int = 50) -> list[Entry]:
    """The newest entries first, those below `before` when given (the console's pages)."""
    return _rows(db, f"SELECT {_COLUMNS} FROM audit_log WHERE seq < ? "  # noqa: S608
                 "ORDER BY seq DESC LIMIT ?",
                 (before if before is not None else 2**62, limit))


def verify(db: Database, *, expect: Head | None = None) -> VerifyResult:
    """Walk the chain from seq 1: each seq follows the last, links to its hash and hashes
    to its own `hash`. `expect`: a head kept elsewhere that must still be in the chain."""
    expected, prev, count = 1, GENESIS, 0
    head = Head(0, GENESIS)
    for entry in _all(db):
        bad = _broken(entry, expected, prev)
        if bad is not None:
            return VerifyResult(False, count, head, bad[0], bad[1])
        if expect is not None and entry.seq == expect.seq and entry.hash != expect.hash:
            return VerifyResult(False, count, head, entry.seq,
                                "differs from the anchored head")
        expected, prev, count = entry.seq + 1, entry.hash, count + 1
        head = Head(entry.seq, entry.hash)
    if expect is not None and head.seq < expect.seq:
        return VerifyResult(False, count, head, head.seq + 1,
                            f"entries {head.seq + 1} to {expect.seq} of the anchored "
                            "head are missing")
    return VerifyResult(True, count, head)


def _broken(entry: Entry, expected: int, prev: str) -> tuple[int, str] | None:
    if entry.seq != expected:
        return expected, f"entry missing (the next one is seq {entry.seq})"
    if entry.prev_hash != prev:
        return entry.seq, "does not link to the previous entry (prev_hash)"
    if entry.hash != entry_hash(entry.seq, entry.at, entry.actor, entry.action,
                                entry.subject, entry.details, entry.prev_hash):
        return entry.seq, "changed after it was written (hash mismatch)"
    return None


def read_anchor(path: Path) -> Head | None:
    """The head kept in `path`, or None when there is none yet."""
    try:
        return Head.parse(path.read_text().strip())
    except FileNotFoundError:
        return None


def anchor(db: Database, path: Path) -> Head | None:
    """Move the head kept in `path` forward to the chain's head, after checking that the
    entry it named is still there, unchanged, and linked to by the entries after it (the
    first anchoring takes the head as it is: `verify` checks what lies before). A
    mismatch is logged and the file kept as it is: it is the evidence. Returns the head
    now anchored (None: nothing to anchor, or the mismatch)."""
    kept = read_anchor(path)
    if kept is None:
        newest = entries(db, limit=1)
        prev = newest[0] if newest else None
    else:
        rows = _rows(db, f"SELECT {_COLUMNS} FROM audit_log WHERE seq >= ? "  # noqa: S608
                     "ORDER BY seq", (kept.seq,))
        if not rows or rows[0].seq != kept.seq or rows[0].hash != kept.hash:
            log.error("audit log: the anchored head %s is no longer in the chain", kept)
            return None
        prev = rows[0]
        for entry in rows[1:]:
            if _broken(entry, prev.seq + 1, prev.hash) is not None:
                log.error("audit log: entry %d breaks the chain after the anchor",
                          entry.seq)
                return None
            prev = entry
    if prev is None:
        return None
    head = Head(prev.seq, prev.hash)
    if kept is None or head.seq > kept.seq:
        write_atomically(path, f"{head}\n".encode())
        log.info("audit log head %s", head)  # the log is a second copy, kept elsewhere
    return head


async def keep_anchoring(db: Database, path: Path, every: float = ANCHOR_EVERY) -> None:
    """`anchor` now and every `every` seconds, off the event loop (a portal task)."""
    while True:
        try:
            await asyncio.to_thread(anchor, db, path)
        except Exception:
            log.exception("audit log anchoring failed")
        await asyncio.sleep(every)
