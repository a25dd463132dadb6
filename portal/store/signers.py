"""The signer's journey on `signers` and their `consents`: consent, accept, restart
(a new link generation), refuse, and the SMS code lock."""

from __future__ import annotations

import datetime as dt

from ground.sql import Cursor
from portal.errors import Code, PortalError
from portal.store.messages import Messages
from portal.store.records import Consent, Signer, SignerStatus, Transaction, TxStatus, iso


class Signers(Messages):
    def check_signer(self, signer_id: str, generation: int) -> tuple[Transaction, Signer]:
        with self.db.transaction() as cur:
            return self._signer_for_update(cur, signer_id, generation)

    def consents(self, signer_id: str, generation: int) -> list[Consent]:
        with self.db.transaction() as cur:
            cur.execute("SELECT kind, version, lang, sha256, accepted_at FROM consents "
                        "WHERE signer_id = ? AND generation = ? ORDER BY kind",
                        (signer_id, generation))
            return [Consent(k, v, lang, sha, dt.datetime.fromisoformat(at))
                    for k, v, lang, sha, at in cur.fetchall()]

    def record_consents(self, signer_id: str, generation: int,
                        accepted: list[tuple[str, str, str, str]]) -> None:
        """(kind, version, lang, sha256) for each text, all at once."""
        now = self.clock()
        with self.db.transaction() as cur:
            tx, signer = self._signer_for_update(cur, signer_id, generation)
            self._require_open(tx, signer)
            self._insert_consents(cur, signer_id, generation, accepted, now)
            if signer.status is SignerStatus.INVITED:
                self._set_status(cur, signer_id, SignerStatus.CONSENTED)

    def accept(self, signer_id: str, generation: int) -> None:
        with self.db.transaction() as cur:
            tx, signer = self._signer_for_update(cur, signer_id, generation)
            self._require_open(tx, signer)
            if signer.status is SignerStatus.INVITED:
                raise PortalError(Code.WRONG_STEP, "accept the policy and terms first")
            if signer.status is SignerStatus.CONSENTED:
                cur.execute("UPDATE signers SET status = ?, accepted_at = ? WHERE id = ?",
                            (SignerStatus.ACCEPTED.value, iso(self.clock()), signer_id))

    def restart(self, signer_id: str, generation: int) -> int:
        """A fresh start: a new generation (older links die), consents to give again."""
        with self.db.transaction() as cur:
            tx, signer = self._signer_for_update(cur, signer_id, generation)
            self._require_open(tx, signer)
            cur.execute("UPDATE signers SET status = ?, generation = generation + 1, "
                        "accepted_at = NULL WHERE id = ?",
                        (SignerStatus.INVITED.value, signer_id))
            cur.execute("UPDATE signing_sessions SET state = 'abandoned' WHERE signer_id = ? "
                        "AND state = 'prepared'", (signer_id,))
            return generation + 1

    def refuse(self, signer_id: str, generation: int, reason: str) -> Transaction:
        now = self.clock()
        with self.db.transaction() as cur:
            tx, signer = self._signer_for_update(cur, signer_id, generation)
            self._require_open(tx, signer)
            cur.execute("UPDATE signers SET status = ?, refusal_reason = ? WHERE id = ?",
                        (SignerStatus.REFUSED.value, reason, signer_id))
            cur.execute("UPDATE transactions SET status = ?, closed_at = ? WHERE id = ?",
                        (TxStatus.REFUSED.value, iso(now), tx.id))
            cur.execute("UPDATE signing_sessions SET state = 'abandoned' WHERE signer_id = ? "
                        "AND state = 'prepared'", (signer_id,))
            if tx.messaging:
                self._add_message(cur, tx.id, "signer", signer_id, signer.name or signer.email,
                                  f"[refused] {reason}")
            return self._load(cur, tx.id)

    @staticmethod
    def _insert_consents(cur: Cursor, signer_id: str, generation: int,
                         accepted: list[tuple[str, str, str, str]], now: dt.datetime) -> None:
        for kind, version, lang, sha in accepted:
            cur.execute("DELETE FROM consents WHERE signer_id = ? AND generation = ? "
                        "AND kind = ?", (signer_id, generation, kind))
            cur.execute("INSERT INTO consents (signer_id, generation, kind, version, lang,"
                        " sha256, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (signer_id, generation, kind, version, lang, sha, iso(now)))

    def _set_status(self, cur: Cursor, signer_id: str, status: SignerStatus) -> None:
        cur.execute("UPDATE signers SET status = ? WHERE id = ?", (status.value, signer_id))

    def set_otp_lock(self, signer_id: str, until: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE signers SET otp_locked_until = ? WHERE id = ?",
                        (iso(until), signer_id))
