"""`identity_sessions`: the identity service's sessions (portal/identity/sessions.py's
`SessionStore`), each one's state as the JSON the service writes and its version, so
that a portal restart loses no signer's progress and the portal's processes never
overwrite each other's writes (issue 17)."""

from __future__ import annotations

import datetime as dt

from portal.store.records import iso
from portal.store.tables import Tables


class IdentitySessions(Tables):
    def load_identity_session(self, session_id: str) -> tuple[str, int] | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT state, version FROM identity_sessions WHERE id = ?",
                        (session_id,))
            row = cur.fetchone()
            return None if row is None else (str(row[0]), int(row[1]))

    def save_identity_session(self, session_id: str, signer: str, expires_at: dt.datetime,
                              state: str, version: int | None) -> bool:
        """A compare-and-set on `version` (portal-0009): a row another portal process
        wrote since it was read is left as it is (False)."""
        with self.db.transaction() as cur:
            if version is None:
                cur.execute("INSERT INTO identity_sessions (id, signer, expires_at, state, "
                            "updated_at, version) VALUES (?, ?, ?, ?, ?, 1) "
                            "ON CONFLICT (id) DO NOTHING",
                            (session_id, signer, iso(expires_at), state, iso(self.clock())))
            else:
                cur.execute("UPDATE identity_sessions SET expires_at = ?, state = ?, "
                            "updated_at = ?, version = version + 1 "
                            "WHERE id = ? AND version = ?",
                            (iso(expires_at), state, iso(self.clock()), session_id, version))
            return cur.rowcount == 1

    def delete_identity_session(self, session_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM identity_sessions WHERE id = ?", (session_id,))

    def expire_identity_sessions(self, now: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM identity_sessions WHERE expires_at <= ?", (iso(now),))
