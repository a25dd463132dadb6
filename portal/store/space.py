"""Personal Space: a signer's records across transactions by e-mail address, and the
`space_sessions` that open it."""

from __future__ import annotations

import datetime as dt

from portal.store.records import Signer, Transaction, iso
from portal.store.transactions import Transactions


class PersonalSpace(Transactions):
    def signer_records(self, email: str) -> list[tuple[Transaction, Signer]]:
        with self.db.transaction() as cur:
            cur.execute("SELECT transaction_id, id FROM signers WHERE lower(email) = ? "
                        "ORDER BY position", (email.lower(),))
            found = []
            for tx_id, signer_id in cur.fetchall():
                tx = self._load(cur, tx_id)
                found.append((tx, tx.signer(signer_id)))
            return found

    def add_space_session(self, digest: str, email: str, expires_at: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO space_sessions (digest, email, expires_at) "
                        "VALUES (?, ?, ?)", (digest, email.lower(), iso(expires_at)))

    def space_session(self, digest: str) -> str | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT email, expires_at FROM space_sessions WHERE digest = ?",
                        (digest,))
            row = cur.fetchone()
        if row is None or dt.datetime.fromisoformat(row[1]) <= self.clock():
            return None
        return str(row[0])
