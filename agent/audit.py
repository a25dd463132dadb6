"""The agent's security journal: who changed what about a token's factors, from which
origin, and how it ended (SECURITY #33: second-factor enrolment is journaled). Kept in
the signature journal's file, written synchronously before the answer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ground.sql import Database

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS security_events ("
    "id INTEGER PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL, origin TEXT NOT NULL, "
    "subject TEXT NOT NULL, outcome TEXT NOT NULL)",
)


@dataclass(frozen=True)
class SecurityEvent:
    at: dt.datetime
    event: str
    origin: str
    subject: str
    outcome: str


class SecurityJournal:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.add_schema(_SCHEMA)

    def record(self, event: str, *, origin: str, subject: str, outcome: str) -> None:
        with self._db.transaction() as cur:
            cur.execute("INSERT INTO security_events (at, event, origin, subject, outcome) "
                        "VALUES (?, ?, ?, ?, ?)", (dt.datetime.now(dt.UTC).isoformat(), event,
                                                   origin, subject, outcome))

    def events(self, subject: str | None = None) -> list[SecurityEvent]:
        with self._db.transaction() as cur:
            if subject is None:
                cur.execute("SELECT at, event, origin, subject, outcome FROM security_events "
                            "ORDER BY id")
            else:
                cur.execute("SELECT at, event, origin, subject, outcome FROM security_events "
                            "WHERE subject = ? ORDER BY id", (subject,))
            return [SecurityEvent(dt.datetime.fromisoformat(a), e, o, s, r)
                    for a, e, o, s, r in cur.fetchall()]
