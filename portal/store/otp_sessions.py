"""`otp_sessions`: SMS code sessions, for a signing session's hashes or for Personal
Space; the code's digest, sends, failures and its single use."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from ground.sql import Cursor
from portal.errors import Code
from portal.store.records import OtpSession, iso, when
from portal.store.tables import Tables, one_row


class OtpSessions(Tables):
    def new_otp_session(self, *, purpose: str, subject: str, phone: str,
                        hashes: list[str]) -> str:
        otp_id = secrets.token_urlsafe(24)
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO otp_sessions (id, purpose, subject, phone, hashes, sends, "
                        "failures, created_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?)",
                        (otp_id, purpose, subject, phone, json.dumps(hashes),
                         iso(self.clock())))
        return otp_id

    def otp_session(self, cur: Cursor, otp_id: str) -> OtpSession:
        row = one_row(cur, "SELECT id, purpose, subject, phone, hashes, code_digest, sent_at, "
                      "expires_at, sends, failures, next_try_at, used_at FROM otp_sessions "
                      "WHERE id = ?", (otp_id,), Code.SESSION_UNKNOWN)
        return OtpSession(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5],
                          when(row[6]), when(row[7]), row[8], row[9], when(row[10]),
                          when(row[11]))

    def update_otp_session(self, cur: Cursor, otp_id: str, **values: Any) -> None:
        allowed = {"code_digest", "sent_at", "expires_at", "sends", "failures",
                   "next_try_at", "used_at"}
        assert set(values) <= allowed
        columns = sorted(values)
        assignments = ", ".join(f"{c} = ?" for c in columns)
        cur.execute(f"UPDATE otp_sessions SET {assignments} WHERE id = ?",  # noqa: S608
                    (*(iso(v) if isinstance(v, dt.datetime) else v
                       for v in (values[c] for c in columns)), otp_id))

    def code_verified(self, signing_session_id: str) -> bool:
        """Was the SMS code of this signing session accepted?"""
        with self.db.transaction() as cur:
            cur.execute("SELECT 1 FROM otp_sessions WHERE purpose = 'sign' AND subject = ? "
                        "AND used_at IS NOT NULL", (signing_session_id,))
            return cur.fetchone() is not None
