"""Signature activation data (SAD): what the agent hands out once both factors passed
(the OTP, then the PIN on the card), and what `signatures/signHash` must present.

As in the Cloud Signature Consortium API (CSC v1 §11.6 credentials/authorize, §11.9
signatures/signHash) and the Sole Control Assurance Level 2 it serves, a SAD is bound
to one credential, the exact list of hashes authorised and, here, the origin that
asked (SECURITY #7, #8). It is:

- an opaque random token of 256 bits (urlsafe base64); only its SHA-256 is stored;
- valid at most 5 minutes (`MAX_TTL_SECONDS`);
- single use: one SAD, one signHash call. That call may sign any non-empty part of
  the authorised hashes (a hash listed twice may be signed twice); the SAD is then
  used up, whatever part was signed. A presentation that fails a binding check
  (another origin, credential or hash) also ends it: the SAD has left the request it
  was issued for, and the signer authorises again;
- void once its origin loses the agent's trust (a revoked pairing, an origin dropped
  from the policy: `void_origin`, SECURITY #37), whether or not it was presented;
- marked used in the same transaction that checks it, committed before the grant is
  returned, so a replay after a crash or a restart is refused (SECURITY #30):
  `consume` commits with synchronous=FULL; `spend` commits in its caller's
  transaction (agent.signing says why signHash needs no fsync of its own there).

Clocks. The expiry is stored as a wall-clock time, so it survives a restart. While
the process that issued a SAD runs, a monotonic deadline is kept as well and either
clock can expire it: a wall clock set back does not lengthen a SAD's life. A SAD
issued before a restart whose issue time lies in the future (the clock went back
past it) is refused as expired: its age can no longer be known (SECURITY #31).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from agent.tokens.model import HashAlgorithm
from ground.sql import Cursor, Database

log = logging.getLogger(__name__)

MAX_TTL_SECONDS = 300  # CSC: SAD lifetime; SP 800-63B §5.1.3.1 allows OOB secrets <= 5 min
MAX_HASHES = 1000  # one authorisation for a batch of documents, bounded
TOKEN_BYTES = 32  # 256 bits (Web eID nonce strength)
_RETAIN_SECONDS = 86400  # keep spent rows a day after expiry, then forget them
_DIGEST_SIZES = frozenset(a.digest_size for a in HashAlgorithm)


class SadRefusal(StrEnum):
    UNKNOWN = "unknown"  # never issued here, malformed, or forgotten long after expiry
    EXPIRED = "expired"
    USED = "used"
    ORIGIN = "origin"  # presented by another origin than the one it was issued to
    CREDENTIAL = "credential"  # presented for another key
    HASHES = "hashes"  # a hash it does not cover (or none at all)
    REVOKED = "revoked"  # its origin's pairing was revoked, or the policy dropped it


class SadInvalid(Exception):
    """The SAD cannot authorise this signature; `reason` says which check refused it."""

    def __init__(self, reason: SadRefusal) -> None:
        super().__init__(f"signature activation data refused: {reason.value}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Grant:
    """What a consumed SAD allows: sign exactly `hashes` with `credential_id`, now."""

    sad_id: str  # a short, non-secret name of the SAD for the journal and logs
    credential_id: str
    origin: str
    hashes: tuple[bytes, ...]  # the hashes presented, in their order
    authorized: tuple[bytes, ...]  # every hash the SAD covered
    num_signatures: int
    issued_at: float
    expires_at: float


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sad ("
    " token_sha256 BLOB PRIMARY KEY, credential_id TEXT NOT NULL, origin TEXT NOT NULL,"
    " hashes TEXT NOT NULL, num_signatures INTEGER NOT NULL, issued_at REAL NOT NULL,"
    " expires_at REAL NOT NULL, used_at REAL, consumed TEXT, outcome TEXT)",
    "CREATE INDEX IF NOT EXISTS sad_expires_at ON sad (expires_at)",
)


class SadIssuer:
    """Issues and consumes SADs, persisted in SQLite (WAL, synchronous=FULL): a file of
    their own, or a database shared with the signature journal, so that a SAD and its
    signatures are written, and later spent and delivered, in one transaction."""

    def __init__(self, store: str | os.PathLike[str] | Database, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._owns_db = not isinstance(store, Database)
        if isinstance(store, Database):
            self._db = store
            store.add_schema(_SCHEMA)
        else:
            self._db = Database.sqlite(store, _SCHEMA)
        self._monotonic = monotonic
        self._deadlines: dict[bytes, float] = {}  # token SHA-256 -> monotonic deadline
        self._deadlines_lock = threading.Lock()

    def close(self) -> None:
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> SadIssuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def issue(self, *, credential_id: str, hashes: Sequence[bytes], origin: str,
              num_signatures: int, ttl_seconds: float = MAX_TTL_SECONDS,
              now: float | None = None, cur: Cursor | None = None) -> str:
        """A new SAD for exactly `hashes` (CSC v1 §11.6: numSignatures must equal the
        number of hashes under SCAL2). Raises ValueError for arguments outside the
        rules; the token is returned to the caller only, never stored or logged.
        With `cur`, the SAD is written in the caller's transaction (committed by it)."""
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"a SAD lives at most {MAX_TTL_SECONDS} s")
        if not credential_id or not origin:
            raise ValueError("a SAD needs a credential and an origin")
        hashes = list(hashes)
        if not 1 <= len(hashes) <= MAX_HASHES:
            raise ValueError(f"a SAD covers 1..{MAX_HASHES} hashes")
        if num_signatures != len(hashes):
            raise ValueError("num_signatures must equal the number of hashes")
        for h in hashes:
            if not isinstance(h, bytes) or len(h) not in _DIGEST_SIZES:
                raise ValueError("each hash is a SHA-256, SHA-384 or SHA-512 digest")
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(TOKEN_BYTES)
        digest = _digest(token)
        row = (digest, credential_id, origin, _encode(hashes), num_signatures, now,
               now + ttl_seconds)
        if cur is None:
            with self._db.transaction() as own:
                self._insert(own, row, now)
        else:
            self._insert(cur, row, now)
        mono = self._monotonic()
        with self._deadlines_lock:
            for key in [k for k, d in self._deadlines.items() if d <= mono]:
                del self._deadlines[key]
            self._deadlines[digest] = mono + ttl_seconds
        log.info("SAD %s issued: credential %s, origin %s, %d hashes, %g s",
                 _sad_id(digest), credential_id, origin, len(hashes), ttl_seconds)
        return token

    @staticmethod
    def _insert(cur: Cursor, row: tuple[object, ...], now: float) -> None:
        cur.execute("DELETE FROM sad WHERE expires_at < ?", (now - _RETAIN_SECONDS,))
        cur.execute(
            "INSERT INTO sad (token_sha256, credential_id, origin, hashes, num_signatures,"
            " issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    def consume(self, token: str, *, credential_id: str, hashes: Sequence[bytes],
                origin: str, now: float | None = None) -> Grant:
        """Check every binding of the SAD and spend it (CSC v1 §11.9), or raise
        SadInvalid. Spent or refused, the SAD's new state is committed first."""
        with self._db.transaction() as cur:
            outcome = self.spend(cur, token, credential_id=credential_id, hashes=hashes,
                                 origin=origin, now=now)
        if isinstance(outcome, SadInvalid):
            raise outcome
        return outcome

    def spend(self, cur: Cursor, token: str, *, credential_id: str,
              hashes: Sequence[bytes], origin: str, now: float | None = None
              ) -> Grant | SadInvalid:
        """`consume` inside the caller's transaction. The refusal is returned, not
        raised, so that the caller commits the SAD's new state before it raises."""
        now = time.time() if now is None else now
        digest = _digest(token) if _well_formed(token) else None
        if digest is None:
            return SadInvalid(SadRefusal.UNKNOWN)
        presented = list(hashes)
        with self._deadlines_lock:
            deadline = self._deadlines.get(digest)
        mono_expired = deadline is not None and self._monotonic() >= deadline
        cur.execute("SELECT token_sha256, credential_id, origin, hashes, num_signatures,"
                    " issued_at, expires_at, used_at, outcome FROM sad"
                    " WHERE token_sha256 = ?", (digest,))
        row = cur.fetchone()
        if row is None or not hmac.compare_digest(bytes(row[0]), digest):
            refusal: SadRefusal | None = SadRefusal.UNKNOWN
        else:
            (_, bound_credential, bound_origin, encoded, num_signatures, issued_at,
             expires_at, used_at, outcome) = row
            authorized = _decode(encoded)
            refusal = SadRefusal.REVOKED if outcome == SadRefusal.REVOKED else _check(
                used=used_at is not None,
                expired=(mono_expired or now >= expires_at
                         or (deadline is None and now < issued_at)),
                origin_ok=origin == bound_origin,
                credential_ok=credential_id == bound_credential,
                hashes_ok=_covers(authorized, presented))
            if refusal in (None, SadRefusal.ORIGIN, SadRefusal.CREDENTIAL,
                           SadRefusal.HASHES):
                cur.execute(
                    "UPDATE sad SET used_at = ?, consumed = ?, outcome = ?"
                    " WHERE token_sha256 = ? AND used_at IS NULL",
                    (now, None if refusal else _encode(presented),
                     refusal.value if refusal else "granted", digest))
                if cur.rowcount != 1:  # pragma: no cover - the write lock is held
                    raise RuntimeError("SAD changed under its write lock")
        if refusal is not None:
            log.warning("SAD %s refused: %s (origin %s, credential %s)",
                        _sad_id(digest), refusal.value, origin, credential_id)
            return SadInvalid(refusal)
        with self._deadlines_lock:
            self._deadlines.pop(digest, None)
        log.info("SAD %s granted: %d of %d hashes", _sad_id(digest), len(presented),
                 len(authorized))
        return Grant(_sad_id(digest), bound_credential, bound_origin, tuple(presented),
                     tuple(authorized), num_signatures, issued_at, expires_at)


    def void_origin(self, origin: str, *, now: float | None = None,
                    cur: Cursor | None = None) -> int:
        """Void every unspent SAD of `origin` (SECURITY #37): a later presentation is
        refused as REVOKED. Answers how many were voided. With `cur`, in the caller's
        transaction."""
        now = time.time() if now is None else now
        if cur is None:
            with self._db.transaction() as own:
                return self.void_origin(origin, now=now, cur=own)
        cur.execute("UPDATE sad SET used_at = ?, outcome = ? WHERE origin = ?"
                    " AND used_at IS NULL", (now, SadRefusal.REVOKED.value, origin))
        if cur.rowcount:
            log.warning("%d unspent SAD(s) of %s voided: the origin is no longer allowed",
                        cur.rowcount, origin)
        return cur.rowcount


def _check(*, used: bool, expired: bool, origin_ok: bool, credential_ok: bool,
           hashes_ok: bool) -> SadRefusal | None:
    if used:
        return SadRefusal.USED
    if expired:
        return SadRefusal.EXPIRED
    if not origin_ok:
        return SadRefusal.ORIGIN
    if not credential_ok:
        return SadRefusal.CREDENTIAL
    if not hashes_ok:
        return SadRefusal.HASHES
    return None


def _covers(authorized: list[bytes], presented: list[bytes]) -> bool:
    """A non-empty sub-multiset: each authorised occurrence of a hash is signed once."""
    if not presented or not all(isinstance(h, bytes) for h in presented):
        return False
    return not Counter(presented) - Counter(authorized)


def _well_formed(token: object) -> bool:
    return (isinstance(token, str) and 16 <= len(token) <= 256 and token.isascii()
            and token.isprintable())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def _sad_id(digest: bytes) -> str:
    return digest[:8].hex()


def _encode(hashes: Sequence[bytes]) -> str:
    return json.dumps([h.hex() for h in hashes])


def _decode(encoded: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in json.loads(encoded)]
