"""Transactions as one aggregate: the `transactions` row, its `documents` with every
signed version (`document_versions`), and its `signers`; and the signer's link check
(the signer exists, the link's generation is current, the transaction is open)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ground.sql import Cursor
from portal.errors import Code, PortalError
from portal.store.records import (
    Document,
    DocumentVersion,
    NewDocument,
    NewSigner,
    Signer,
    SignerStatus,
    Transaction,
    TxStatus,
    iso,
    new_id,
    when,
)
from portal.store.tables import Tables, one_row

DEFAULT_WORKSPACE = "default"  # where transactions from before workspaces are


class Transactions(Tables):
    def create_transaction(self, *, title: str, requester_name: str, requester_email: str,
                           documents: list[NewDocument], signers: list[NewSigner],
                           sequential: bool, expires_in: dt.timedelta, qualified: bool,
                           messaging: bool, level: str, workspace_id: str | None = None,
                           created_by: str | None = None, turns: list[int] | None = None,
                           then: Callable[[Cursor, Transaction], None] | None = None
                           ) -> Transaction:
        """`turns`: each signer's turn (portal/store/turns.py); None: by `sequential`.
        `then`: more rows about the new transaction, written in the same transaction."""
        now = self.clock()
        turns = turns or [p if sequential else 0 for p in range(len(signers))]
        tx_id = new_id()
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO transactions (id, title, requester_name, requester_email, "
                "status, created_at, expires_at, sequential, qualified, messaging, level, "
                "workspace_id, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tx_id, title, requester_name, requester_email, TxStatus.OPEN.value,
                 iso(now), iso(now + expires_in), int(sequential), int(qualified),
                 int(messaging), level, workspace_id or DEFAULT_WORKSPACE, created_by))
            for position, doc in enumerate(documents):
                doc_id = new_id()
                cur.execute("INSERT INTO documents (id, transaction_id, position, name, pages)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (doc_id, tx_id, position, doc.name, doc.pages))
                cur.execute("INSERT INTO document_versions (document_id, version, sha256, "
                            "size, signer_id, created_at) VALUES (?, 0, ?, ?, NULL, ?)",
                            (doc_id, doc.sha256, doc.size, iso(now)))
            for position, (signer, turn) in enumerate(zip(signers, turns, strict=True)):
                first = turn == min(turns)  # a signer is invited only when their turn comes
                cur.execute(
                    "INSERT INTO signers (id, transaction_id, position, name, email, phone, "
                    "lang, status, generation, turn) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    (new_id(), tx_id, position, signer.name, signer.email, signer.phone,
                     signer.lang,
                     (SignerStatus.INVITED if first else SignerStatus.WAITING).value, turn))
            tx = self._load(cur, tx_id)
            if then is not None:
                then(cur, tx)
            return tx

    def transaction(self, tx_id: str) -> Transaction:
        with self.db.transaction() as cur:
            return self._load(cur, tx_id)

    def transaction_of_signer(self, signer_id: str) -> Transaction:
        with self.db.transaction() as cur:
            return self._load(cur, _transaction_id(cur, signer_id))

    def transactions(self) -> list[Transaction]:
        with self.db.transaction() as cur:
            cur.execute("SELECT id FROM transactions ORDER BY created_at DESC, id")
            return [self._load(cur, row[0]) for row in cur.fetchall()]

    def expire_due(self) -> list[Transaction]:
        """Close open transactions whose expiry passed; returns them (to notify)."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("SELECT id FROM transactions WHERE status = ? AND expires_at <= ?",
                        (TxStatus.OPEN.value, iso(now)))
            due = [row[0] for row in cur.fetchall()]
            for tx_id in due:
                cur.execute("UPDATE transactions SET status = ?, closed_at = ? WHERE id = ?",
                            (TxStatus.EXPIRED.value, iso(now), tx_id))
            return [self._load(cur, tx_id) for tx_id in due]

    def _load(self, cur: Cursor, tx_id: str) -> Transaction:
        row = one_row(cur, "SELECT id, title, requester_name, requester_email, status, "
                      "created_at, expires_at, sequential, qualified, messaging, level "
                      "FROM transactions WHERE id = ?", (tx_id,),
                      Code.NOT_FOUND, "no such transaction")
        cur.execute("SELECT d.id, d.name, d.position, d.pages, v.version, v.sha256, v.size, "
                    "v.signer_id FROM documents d JOIN document_versions v "
                    "ON v.document_id = d.id WHERE d.transaction_id = ? "
                    "ORDER BY d.position, v.version", (tx_id,))
        docs: dict[str, tuple[str, int, int, list[DocumentVersion]]] = {}
        for doc_id, name, position, pages, version, sha, size, signer_id in cur.fetchall():
            docs.setdefault(doc_id, (name, position, pages, []))[3].append(
                DocumentVersion(version, sha, int(size), signer_id))
        cur.execute("SELECT id, transaction_id, position, name, email, phone, lang, status, "
                    "generation, refusal_reason, accepted_at, signed_at, otp_locked_until, "
                    "turn FROM signers WHERE transaction_id = ? ORDER BY position", (tx_id,))
        signers = tuple(
            Signer(s[0], s[1], s[2], s[3], s[4], s[5], s[6], SignerStatus(s[7]), s[8], s[9],
                   when(s[10]), when(s[11]), when(s[12]), int(s[13] or 0))
            for s in cur.fetchall())
        status = TxStatus(row[4])
        expires_at = dt.datetime.fromisoformat(row[6])
        if status is TxStatus.OPEN and expires_at <= self.clock():
            status = TxStatus.EXPIRED  # the sweeper writes it down; readers see it at once
        return Transaction(
            id=row[0], title=row[1], requester_name=row[2], requester_email=row[3],
            status=status, created_at=dt.datetime.fromisoformat(row[5]),
            expires_at=expires_at, sequential=bool(row[7]), qualified=bool(row[8]),
            messaging=bool(row[9]), level=row[10],
            documents=tuple(Document(doc_id, name, position, pages, tuple(versions))
                            for doc_id, (name, position, pages, versions) in docs.items()),
            signers=signers)

    def _signer_for_update(self, cur: Cursor, signer_id: str, generation: int
                           ) -> tuple[Transaction, Signer]:
        tx = self._load(cur, _transaction_id(cur, signer_id))
        signer = tx.signer(signer_id)
        if signer.generation != generation:
            raise PortalError(Code.LINK_REVOKED)
        return tx, signer

    @staticmethod
    def _require_open(tx: Transaction, signer: Signer) -> None:
        if signer.status is SignerStatus.SIGNED:
            raise PortalError(Code.ALREADY_SIGNED)
        if tx.status is not TxStatus.OPEN or signer.status is SignerStatus.REFUSED:
            raise PortalError(Code.TRANSACTION_CLOSED, f"this transaction is {tx.status}")
        if signer.status is SignerStatus.WAITING:
            raise PortalError(Code.NOT_YOUR_TURN)


def _transaction_id(cur: Cursor, signer_id: str) -> str:
    """The transaction a signer belongs to; LINK_INVALID for a signer not (or no longer) there."""
    row = one_row(cur, "SELECT transaction_id FROM signers WHERE id = ?", (signer_id,),
                  Code.LINK_INVALID)
    return str(row[0])
