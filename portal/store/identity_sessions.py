"""`identity_sessions`: the identity service's sessions (portal/identity/sessions.py's
`SessionStore`), each one's state as the JSON the service writes, so that a portal
restart loses no signer's progress (issue 17)."""

from __future__ import annotations

import datetime as dt

from portal.store.records import iso
from portal.store.tables import Tables


class IdentitySessions(Tables):
    def load_identity_session(self, session_id: str) -> str | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT state FROM identity_sessions WHERE id = ?", (session_id,))
            row = cur.fetchone()
            return None if row is None else str(row[0])

    def save_identity_session(self, session_id: str, signer: str, expires_at: dt.datetime,
                              state: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO identity_sessions (id, signer, expires_at, state, "
                        "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                        "expires_at = excluded.expires_at, state = excluded.state, "
                        "updated_at = excluded.updated_at",
                        (session_id, signer, iso(expires_at), state, iso(self.clock())))

    def delete_identity_session(self, session_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM identity_sessions WHERE id = ?", (session_id,))

    def expire_identity_sessions(self, now: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM identity_sessions WHERE expires_at <= ?", (iso(now),))
