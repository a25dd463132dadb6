"""The `messages` of a transaction between its requester and its signers."""

from __future__ import annotations

import datetime as dt

from ground.sql import Cursor
from portal.errors import Code, PortalError
from portal.store.records import Message, SignerStatus, TxStatus, iso, ordered_id
from portal.store.transactions import Transactions


class Messages(Transactions):
    def _add_message(self, cur: Cursor, tx_id: str, author: str, signer_id: str | None,
                     name: str, text: str) -> Message:
        message = Message(ordered_id(), author, signer_id, name, text, self.clock())
        cur.execute("INSERT INTO messages (id, transaction_id, author, signer_id, name, text, "
                    "at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (message.id, tx_id, author, signer_id, name, text, iso(message.at)))
        return message

    def add_message(self, tx_id: str, *, author: str, signer_id: str | None = None,
                    generation: int | None = None, name: str, text: str) -> Message:
        with self.db.transaction() as cur:
            tx = self._load(cur, tx_id)
            if not tx.messaging:
                raise PortalError(Code.MESSAGING_DISABLED)
            if signer_id is not None:
                _, signer = self._signer_for_update(cur, signer_id, generation or 0)
                if signer.status is SignerStatus.SIGNED:
                    raise PortalError(Code.ALREADY_SIGNED, "messaging ends once you signed")
            if tx.status is not TxStatus.OPEN:
                raise PortalError(Code.TRANSACTION_CLOSED)
            return self._add_message(cur, tx_id, author, signer_id, name, text)

    def messages(self, tx_id: str) -> list[Message]:
        with self.db.transaction() as cur:
            cur.execute("SELECT id, author, signer_id, name, text, at FROM messages "
                        "WHERE transaction_id = ? ORDER BY id", (tx_id,))
            return [Message(i, a, s, n, t, dt.datetime.fromisoformat(at))
                    for i, a, s, n, t, at in cur.fetchall()]
