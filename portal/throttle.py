"""Persisted counters for SMS codes, kept per bucket ("<what>:<phone or space>") in the
portal's database, so that a restart or another portal process forgets nothing
(DESIGN "Persistence"; SECURITY #21, #42).

Two shapes share one table:
- a cool-down: each counted event beyond `free` makes the next one wait, from `first`
  doubling up to `cap`; a quiet `forget` (or a success) starts the streak again;
- a window: at most so many events per `window`, counted from the window's first event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ground.sql import Cursor, Database

_SELECT = ("SELECT strikes, first_at, last_at, blocked_until FROM otp_throttles "
           "WHERE bucket = ?")


@dataclass(frozen=True)
class CoolDown:
    first: dt.timedelta
    cap: dt.timedelta
    free: int = 0
    forget: dt.timedelta = dt.timedelta(hours=1)

    def wait_after(self, strikes: int) -> dt.timedelta | None:
        """How long the event after the `strikes`-th must wait (None: not at all)."""
        beyond = strikes - self.free
        if beyond <= 0:
            return None
        grown: dt.timedelta = self.first * (1 << min(beyond - 1, 16))
        return min(grown, self.cap)


@dataclass(frozen=True)
class _Row:
    strikes: int
    first_at: dt.datetime
    last_at: dt.datetime
    blocked_until: dt.datetime | None


class Throttles:
    def __init__(self, db: Database) -> None:
        self._db = db  # its table otp_throttles: portal/migrations/

    def _row(self, cur: Cursor, bucket: str) -> _Row | None:
        # PostgreSQL: the row stays locked to this transaction (SQLite: BEGIN IMMEDIATE).
        cur.execute(_SELECT + (" FOR UPDATE" if self._db.dialect == "postgresql" else ""),
                    (bucket,))
        row = cur.fetchone()
        if row is None:
            return None
        return _Row(int(row[0]), dt.datetime.fromisoformat(row[1]),
                    dt.datetime.fromisoformat(row[2]),
                    None if row[3] is None else dt.datetime.fromisoformat(row[3]))

    def _save(self, cur: Cursor, bucket: str, row: _Row) -> None:
        values = (row.strikes, row.first_at.isoformat(), row.last_at.isoformat(),
                  None if row.blocked_until is None else row.blocked_until.isoformat())
        cur.execute("INSERT INTO otp_throttles (bucket, strikes, first_at, last_at, "
                    "blocked_until) VALUES (?, ?, ?, ?, ?) ON CONFLICT (bucket) DO UPDATE "
                    "SET strikes = ?, first_at = ?, last_at = ?, blocked_until = ?",
                    (bucket, *values, *values))

    def wait(self, cur: Cursor, buckets: tuple[str, ...], now: dt.datetime
             ) -> dt.timedelta | None:
        """The longest cool-down still running on any of `buckets`."""
        waits = []
        for bucket in buckets:
            row = self._row(cur, bucket)
            if row is not None and row.blocked_until is not None and row.blocked_until > now:
                waits.append(row.blocked_until - now)
        return max(waits, default=None)

    def strike(self, cur: Cursor, buckets: tuple[str, ...], now: dt.datetime,
               rule: CoolDown) -> None:
        """One more event on each bucket; the next waits as `rule` says."""
        for bucket in buckets:
            row = self._row(cur, bucket)
            strikes = 1 if row is None or now - row.last_at >= rule.forget else \
                row.strikes + 1
            first_at = now if row is None or strikes == 1 else row.first_at
            wait = rule.wait_after(strikes)
            self._save(cur, bucket, _Row(strikes, first_at, now,
                                         None if wait is None else now + wait))

    def clear(self, cur: Cursor, buckets: tuple[str, ...]) -> None:
        for bucket in buckets:
            cur.execute("DELETE FROM otp_throttles WHERE bucket = ?", (bucket,))

    def counted(self, cur: Cursor, bucket: str, now: dt.datetime, window: dt.timedelta
                ) -> tuple[int, dt.timedelta]:
        """Events in the bucket's current window, and the time left until it ends."""
        row = self._row(cur, bucket)
        if row is None or now - row.first_at >= window:
            return 0, window
        return row.strikes, row.first_at + window - now

    def count(self, cur: Cursor, bucket: str, now: dt.datetime, window: dt.timedelta
              ) -> None:
        """One more event in the bucket's window (a new window when the last ended)."""
        row = self._row(cur, bucket)
        if row is None or now - row.first_at >= window:
            self._save(cur, bucket, _Row(1, now, now, None))
        else:
            self._save(cur, bucket, _Row(row.strikes + 1, row.first_at, now, None))
