"""Confirmations a person gives outside the page (SECURITY #33, #34).

Some requests must not rest on anything a page can supply: a second factor enrolled
without an existing one, a key replaced while its slot holds a valid qualified
certificate. The agent then answers CONFIRMATION_REQUIRED with a short code and a
description; the person approves that code where no page can reach (`qsign agent
approve CODE`, or the agent's own approval page), and the page repeats the request
with `confirmation: CODE`. A code is bound to the origin, the action and its subject,
lives 5 minutes and is spent once. Requests live in the agent's state database, so the
CLI process approves what the running agent asked.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from agent.state import AgentState, PairingError
from ground.sql import Cursor

CONFIRMATION_TTL = dt.timedelta(minutes=5)
MAX_PENDING = 20  # across origins: a page cannot fill a person's list
MAX_PENDING_PER_ORIGIN = 3
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read and typed by people
CODE_LENGTH = 8

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS confirmations ("
    "code TEXT PRIMARY KEY, origin TEXT NOT NULL, action TEXT NOT NULL, "
    "subject TEXT NOT NULL, description TEXT NOT NULL, expires_at TEXT NOT NULL, "
    "approved INTEGER NOT NULL DEFAULT 0)",
)


class ConfirmationRequired(Exception):
    """The request waits for a person's approval of `code` outside the page."""

    def __init__(self, code: str, action: str, subject: str) -> None:
        super().__init__(f"confirm outside the page: qsign agent approve {code}")
        self.code = code
        self.action = action
        self.subject = subject


class ConfirmationsBusy(Exception):
    """Too many confirmations wait already (from this origin, or in all)."""


@dataclass(frozen=True)
class PendingConfirmation:
    code: str
    origin: str
    action: str
    subject: str
    description: str


def _display(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def _typed(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


class Confirmations:
    """The agent's side: ask for a confirmation, or spend an approved one."""

    def __init__(self, state: AgentState) -> None:
        self._db = state.database
        self._db.add_schema(_SCHEMA)

    def require(self, *, origin: str, action: str, subject: str, description: str,
                presented: str | None, now: dt.datetime | None = None) -> None:
        """Pass, spending `presented`, when a person approved it for exactly this
        origin, action and subject; else record a request and raise
        ConfirmationRequired (a wrong or foreign code gets a new request, never a pass)."""
        now = now or _now()
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM confirmations WHERE expires_at < ?", (now.isoformat(),))
            if presented is not None and _spend(cur, _typed(presented), origin, action,
                                                subject):
                return
            cur.execute("SELECT code FROM confirmations WHERE origin = ? AND action = ? AND "
                        "subject = ? AND approved = 0", (origin, action, subject))
            waiting = cur.fetchone()
            if waiting is not None:  # the same request again: the same code
                raise ConfirmationRequired(_display(waiting[0]), action, subject)
            cur.execute("SELECT COUNT(*), COALESCE(SUM(origin = ?), 0) FROM confirmations "
                        "WHERE approved = 0", (origin,))
            total, mine = cur.fetchone()
            if total >= MAX_PENDING or mine >= MAX_PENDING_PER_ORIGIN:
                raise ConfirmationsBusy("too many confirmations are waiting")
            code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
            cur.execute("INSERT INTO confirmations (code, origin, action, subject, "
                        "description, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (code, origin, action, subject, description,
                         (now + CONFIRMATION_TTL).isoformat()))
        raise ConfirmationRequired(_display(code), action, subject)


def _spend(cur: Cursor, typed: str, origin: str, action: str, subject: str) -> bool:
    cur.execute("SELECT code FROM confirmations WHERE origin = ? AND action = ? AND "
                "subject = ? AND approved = 1", (origin, action, subject))
    for (stored,) in cur.fetchall():
        if hmac.compare_digest(stored.encode(), typed.encode()):
            cur.execute("DELETE FROM confirmations WHERE code = ?", (stored,))
            return True
    return False


# The person's side (CLI and the approval page) -------------------------------------------


def forget_origin(state: AgentState, origin: str) -> int:
    """A revoked origin's confirmations, asked or approved, are void (SECURITY #37)."""
    with state.database.transaction() as cur:
        cur.execute("DELETE FROM confirmations WHERE origin = ?", (origin,))
        return cur.rowcount


def pending_confirmations(state: AgentState, now: dt.datetime | None = None
                          ) -> list[PendingConfirmation]:
    now = now or _now()
    with state.database.transaction() as cur:
        cur.execute("SELECT code, origin, action, subject, description FROM confirmations "
                    "WHERE approved = 0 AND expires_at >= ? ORDER BY expires_at",
                    (now.isoformat(),))
        return [PendingConfirmation(_display(c), o, a, s, d) for c, o, a, s, d in
                cur.fetchall()]


def decide(state: AgentState, code: str, *, approve: bool,
           now: dt.datetime | None = None) -> tuple[str, str]:
    """A person approved or denied `code`: a confirmation's, else a pairing's. Answers
    ("confirmation", "ORIGIN: what it allows") or ("pairing", ORIGIN)."""
    now = now or _now()
    typed = _typed(code)
    with state.database.transaction() as cur:
        cur.execute("SELECT code, origin, description, expires_at, approved "
                    "FROM confirmations")
        for stored, origin, description, expires, approved in cur.fetchall():
            if not hmac.compare_digest(stored.encode(), typed.encode()):
                continue
            if approved or dt.datetime.fromisoformat(expires) < now:
                raise PairingError("this code has expired or was already used")
            if approve:
                cur.execute("UPDATE confirmations SET approved = 1 WHERE code = ?", (stored,))
            else:
                cur.execute("DELETE FROM confirmations WHERE code = ?", (stored,))
            return "confirmation", f"{origin}: {description}"
    return "pairing", state.approve(code, now) if approve else state.deny(code, now)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
