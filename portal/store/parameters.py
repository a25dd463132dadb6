"""A transaction's parameters beyond its row (`transaction_parameters`) and each signer's
(`signer_parameters`): signing order, reminders, the second factor asked, the signer's
page languages, downloads of unsigned documents, the invitation's message, the visible
signature's place; and the requester's actions on a transaction: cancel, replace a
signer who has not signed, and the reminders' schedule, claimed by one portal process at
a time (`UPDATE ... WHERE next_reminder_at = <the value read>`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from ground.sql import Cursor
from portal.errors import Code, PortalError
from portal.store.records import (
    NewSigner,
    Signer,
    SignerStatus,
    Transaction,
    TxStatus,
    iso,
    when,
)
from portal.store.transactions import Transactions
from portal.store.turns import SigningOrder

# Signers who were invited and have not signed or refused yet.
_PENDING = (SignerStatus.INVITED.value, SignerStatus.CONSENTED.value,
            SignerStatus.ACCEPTED.value)


@dataclass(frozen=True)
class Appearance:
    """Where a signer's visible signature goes: an existing signature field by name, or
    a page (1-based) and a rectangle in PDF points (x1, y1, x2, y2; ISO 32000-1 §12.5.2
    /Rect); neither: an invisible signature."""

    field: str | None = None
    page: int | None = None
    rect: tuple[float, float, float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        if self.field is not None:
            return {"field": self.field}
        return {"page": self.page, "rect": list(self.rect or ())}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Appearance | None:
        if not value:
            return None
        if "field" in value:
            return cls(field=str(value["field"]))
        x1, y1, x2, y2 = (float(v) for v in value["rect"])
        return cls(page=int(value["page"]), rect=(x1, y1, x2, y2))


@dataclass(frozen=True)
class TxParameters:
    signing_order: SigningOrder = SigningOrder.SEQUENTIAL
    reminder_days: int | None = None
    second_factor: str = "sms"  # "sms" | "totp"
    languages: tuple[str, ...] = ("en", "fr")
    download_unsigned: bool = True
    message: str | None = None  # the requester's note in the invitation
    template_id: str | None = None
    cancelled_at: dt.datetime | None = None
    cancel_reason: str | None = None
    appearances: dict[int, Appearance] = field(default_factory=dict)  # by signer position

    def to_json(self) -> dict[str, Any]:
        return {"signingOrder": self.signing_order.value, "reminderDays": self.reminder_days,
                "secondFactor": self.second_factor, "languages": list(self.languages),
                "downloadUnsigned": self.download_unsigned, "message": self.message}


class Parameters(Transactions):
    def keep_parameters(self, cur: Cursor, tx: Transaction, parameters: TxParameters) -> None:
        """Inside the transaction that creates `tx` (Transactions.create_transaction's
        `then`)."""
        cur.execute(
            "INSERT INTO transaction_parameters (transaction_id, signing_order, "
            "reminder_days, second_factor, languages, download_unsigned, message, "
            "template_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (tx.id, parameters.signing_order.value, parameters.reminder_days,
             parameters.second_factor, json.dumps(list(parameters.languages)),
             int(parameters.download_unsigned), parameters.message, parameters.template_id))
        for signer in tx.signers:
            appearance = parameters.appearances.get(signer.position)
            cur.execute("INSERT INTO signer_parameters (signer_id, transaction_id, appearance,"
                        " next_reminder_at, reminders_sent) VALUES (?, ?, ?, NULL, 0)",
                        (signer.id, tx.id,
                         None if appearance is None else json.dumps(appearance.to_json())))

    def parameters(self, tx_id: str) -> TxParameters:
        """`tx_id`'s parameters; a transaction from before them has the defaults (its
        order from `sequential`)."""
        with self.db.transaction() as cur:
            return self._parameters(cur, tx_id)

    def _parameters(self, cur: Cursor, tx_id: str) -> TxParameters:
        cur.execute("SELECT signing_order, reminder_days, second_factor, languages, "
                    "download_unsigned, message, template_id, cancelled_at, cancel_reason "
                    "FROM transaction_parameters WHERE transaction_id = ?", (tx_id,))
        row = cur.fetchone()
        cur.execute("SELECT s.position, p.appearance FROM signer_parameters p JOIN signers s "
                    "ON s.id = p.signer_id WHERE p.transaction_id = ? AND p.appearance "
                    "IS NOT NULL", (tx_id,))
        appearances = {int(pos): Appearance.from_json(json.loads(text))
                       for pos, text in cur.fetchall()}
        if row is None:
            cur.execute("SELECT sequential FROM transactions WHERE id = ?", (tx_id,))
            seq = cur.fetchone()
            if seq is None:
                raise PortalError(Code.NOT_FOUND, "no such transaction")
            return TxParameters(SigningOrder.SEQUENTIAL if seq[0] else SigningOrder.PARALLEL)
        return TxParameters(
            SigningOrder(row[0]), row[1], row[2], tuple(json.loads(row[3])), bool(row[4]),
            row[5], row[6], when(row[7]), row[8],
            {k: v for k, v in appearances.items() if v is not None})

    def signer_appearance(self, signer_id: str) -> Appearance | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT appearance FROM signer_parameters WHERE signer_id = ?",
                        (signer_id,))
            row = cur.fetchone()
            return None if row is None or row[0] is None else \
                Appearance.from_json(json.loads(row[0]))

    def cancel(self, tx_id: str, reason: str | None) -> Transaction:
        """Close an open transaction for good: every link dies with it."""
        now = self.clock()
        with self.db.transaction() as cur:
            tx = self._load(cur, tx_id)
            if tx.status is not TxStatus.OPEN:
                raise PortalError(Code.TRANSACTION_CLOSED, f"this transaction is {tx.status}")
            cur.execute("UPDATE transactions SET status = ?, closed_at = ? WHERE id = ? "
                        "AND status = ?", (TxStatus.CANCELLED.value, iso(now), tx_id,
                                           TxStatus.OPEN.value))
            cur.execute("UPDATE transaction_parameters SET cancelled_at = ?, cancel_reason = ?"
                        " WHERE transaction_id = ?", (iso(now), reason, tx_id))
            cur.execute("UPDATE signing_sessions SET state = 'abandoned' WHERE state = "
                        "'prepared' AND signer_id IN (SELECT id FROM signers WHERE "
                        "transaction_id = ?)", (tx_id,))
            return self._load(cur, tx_id)

    def replace_signer(self, tx_id: str, signer_id: str, new: NewSigner
                       ) -> tuple[Transaction, Signer]:
        """Someone else in a signer's place, who has not signed: a new link generation
        (the old link dies), consents and enrolment to give again, the same turn."""
        with self.db.transaction() as cur:
            tx = self._load(cur, tx_id)
            signer = tx.signer(signer_id)
            if tx.status is not TxStatus.OPEN:
                raise PortalError(Code.TRANSACTION_CLOSED, f"this transaction is {tx.status}")
            if signer.status in (SignerStatus.SIGNED, SignerStatus.REFUSED):
                raise PortalError(Code.ALREADY_SIGNED if signer.status is SignerStatus.SIGNED
                                  else Code.TRANSACTION_CLOSED,
                                  f"this signer has {signer.status.value}: they stay")
            status = (SignerStatus.WAITING if signer.status is SignerStatus.WAITING
                      else SignerStatus.INVITED)
            cur.execute("UPDATE signers SET name = ?, email = ?, phone = ?, lang = ?, "
                        "status = ?, generation = generation + 1, accepted_at = NULL, "
                        "otp_locked_until = NULL WHERE id = ?",
                        (new.name, new.email, new.phone, new.lang, status.value, signer_id))
            cur.execute("UPDATE signing_sessions SET state = 'abandoned' WHERE signer_id = ? "
                        "AND state = 'prepared'", (signer_id,))
            cur.execute("DELETE FROM enrolments WHERE signer_id = ?", (signer_id,))
            cur.execute("UPDATE signer_parameters SET next_reminder_at = NULL, "
                        "reminders_sent = 0 WHERE signer_id = ?", (signer_id,))
            after = self._load(cur, tx_id)
            return after, after.signer(signer_id)

    def reminders_due(self) -> list[tuple[str, str | None, int]]:
        """(signer id, next_reminder_at as read, the transaction's reminder_days) of every
        invited signer of an open transaction with reminders: None means not scheduled."""
        with self.db.transaction() as cur:
            cur.execute(
                "SELECT p.signer_id, p.next_reminder_at, tp.reminder_days "
                "FROM signer_parameters p JOIN signers s ON s.id = p.signer_id "
                "JOIN transactions t ON t.id = p.transaction_id "
                "JOIN transaction_parameters tp ON tp.transaction_id = t.id "
                "WHERE t.status = ? AND tp.reminder_days IS NOT NULL AND s.status IN "
                "(?, ?, ?) AND (p.next_reminder_at IS NULL OR "
                "p.next_reminder_at <= ?) AND t.expires_at > ?",
                (TxStatus.OPEN.value, *_PENDING, iso(self.clock()), iso(self.clock())))
            return [(s, n, int(d)) for s, n, d in cur.fetchall()]

    def claim_reminder(self, signer_id: str, seen: str | None, days: int) -> bool:
        """Move the signer's next reminder `days` on, if it still is `seen`: True for the
        one process whose UPDATE won (it sends the reminder when `seen` was a time)."""
        following = iso(self.clock() + dt.timedelta(days=days))
        with self.db.transaction() as cur:
            if seen is None:
                cur.execute("UPDATE signer_parameters SET next_reminder_at = ? "
                            "WHERE signer_id = ? AND next_reminder_at IS NULL",
                            (following, signer_id))
            else:
                cur.execute("UPDATE signer_parameters SET next_reminder_at = ?, "
                            "reminders_sent = reminders_sent + 1 WHERE signer_id = ? AND "
                            "next_reminder_at = ?", (following, signer_id, seen))
            return cur.rowcount == 1
