"""`enrolments`: a first-time signer's certificate enrolment, step by step, before the
documents (personal data, issuance consents, identity, authentication data, PIN,
certificate)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ground.sql import Cursor
from portal.errors import Code, PortalError
from portal.store.certificates import SignerCertificates
from portal.store.records import (
    Enrolment,
    EnrolmentStep,
    Signer,
    SignerStatus,
    Transaction,
    iso,
    json_dict,
)
from portal.store.signers import Signers


class Enrolments(Signers, SignerCertificates):
    def _enrolment(self, cur: Cursor, signer_id: str) -> Enrolment | None:
        cur.execute("SELECT step, identity_session, identity, comparison, auth, spki_sha256, "
                    "certificate FROM enrolments WHERE signer_id = ?", (signer_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return Enrolment(EnrolmentStep(row[0]), row[1], json_dict(row[2]), json_dict(row[3]),
                         json_dict(row[4]), row[5], None if row[6] is None else bytes(row[6]))

    def _enrolment_at(self, cur: Cursor, signer_id: str, generation: int,
                      expected: EnrolmentStep) -> tuple[Transaction, Signer, Enrolment]:
        """The open transaction, the signer and their enrolment, which must be at
        `expected` (WRONG_STEP otherwise)."""
        tx, signer = self._signer_for_update(cur, signer_id, generation)
        self._require_open(tx, signer)
        current = self._enrolment(cur, signer_id)
        if current is None or current.step is not expected:
            raise PortalError(Code.WRONG_STEP, f"this is not the {expected} step")
        return tx, signer, current

    def enrolment(self, signer_id: str, generation: int) -> Enrolment | None:
        with self.db.transaction() as cur:
            self._signer_for_update(cur, signer_id, generation)
            return self._enrolment(cur, signer_id)

    def start_enrolment(self, signer_id: str, generation: int) -> None:
        """After the signature service's consents, before the documents; once."""
        with self.db.transaction() as cur:
            tx, signer = self._signer_for_update(cur, signer_id, generation)
            self._require_open(tx, signer)
            if self._enrolment(cur, signer_id) is not None:
                return  # already started: the page resumes where it stands
            if signer.status not in (SignerStatus.CONSENTED, SignerStatus.ACCEPTED):
                raise PortalError(Code.WRONG_STEP, "enrolment comes after the consents")
            cur.execute("INSERT INTO enrolments (signer_id, step, updated_at) "
                        "VALUES (?, ?, ?)", (signer_id, EnrolmentStep.PERSONAL_DATA.value,
                                             iso(self.clock())))

    def update_enrolment(self, signer_id: str, generation: int, expected: EnrolmentStep,
                         *, step: EnrolmentStep | None = None, phone: str | None = None,
                         **values: Any) -> None:
        """Set columns (identity_session, identity, comparison, auth, spki_sha256) and
        maybe move to `step`, if the enrolment is at `expected`."""
        allowed = {"identity_session", "identity", "comparison", "auth", "spki_sha256"}
        assert set(values) <= allowed
        with self.db.transaction() as cur:
            _tx, _signer, _current = self._enrolment_at(cur, signer_id, generation,
                                                     expected)
            columns = sorted(values)
            params = [json.dumps(values[c]) if isinstance(values[c], dict) else values[c]
                      for c in columns]
            assignments = "".join(f", {c} = ?" for c in columns)
            cur.execute(f"UPDATE enrolments SET step = ?, updated_at = ?{assignments} "  # noqa: S608
                        "WHERE signer_id = ?",
                        ((step or expected).value, iso(self.clock()), *params, signer_id))
            if phone is not None:
                cur.execute("UPDATE signers SET phone = ? WHERE id = ?", (phone, signer_id))

    def advance_enrolment(self, signer_id: str, generation: int, expected: EnrolmentStep,
                          step: EnrolmentStep) -> None:
        self.update_enrolment(signer_id, generation, expected, step=step)

    def correct_personal_data(self, signer_id: str, generation: int, *, name: str,
                              phone: str) -> int:
        """The signer's own corrections: stored, the requester told, the link renewed
        (consents carried over). Returns the new generation."""
        with self.db.transaction() as cur:
            tx, signer, _current = self._enrolment_at(cur, signer_id, generation,
                                                     EnrolmentStep.PERSONAL_DATA)
            cur.execute("UPDATE signers SET name = ?, phone = ?, generation = ? WHERE id = ?",
                        (name, phone, generation + 1, signer_id))
            cur.execute("INSERT INTO consents (signer_id, generation, kind, version, lang, "
                        "sha256, accepted_at) SELECT signer_id, ?, kind, version, lang, "
                        "sha256, accepted_at FROM consents WHERE signer_id = ? "
                        "AND generation = ?", (generation + 1, signer_id, generation))
            cur.execute("UPDATE enrolments SET step = ?, updated_at = ? WHERE signer_id = ?",
                        (EnrolmentStep.ISSUANCE_CONSENTS.value, iso(self.clock()),
                         signer_id))
            text = (f"[personal data corrected] {signer.name or '-'} / {signer.phone or '-'}"
                    f" -> {name} / {phone}")
            if tx.messaging:
                self._add_message(cur, tx.id, "signer", signer_id, name, text)
            return generation + 1

    def record_enrolment_consents(self, signer_id: str, generation: int,
                                  accepted: list[tuple[str, str, str, str]]) -> None:
        now = self.clock()
        with self.db.transaction() as cur:
            _tx, _signer, _current = self._enrolment_at(cur, signer_id, generation,
                                                     EnrolmentStep.ISSUANCE_CONSENTS)
            self._insert_consents(cur, signer_id, generation, accepted, now)
            cur.execute("UPDATE enrolments SET step = ?, updated_at = ? WHERE signer_id = ?",
                        (EnrolmentStep.IDENTITY.value, iso(now), signer_id))

    def finish_enrolment(self, signer_id: str, generation: int, certificate: bytes,
                         chain: list[bytes]) -> None:
        """The issued certificate: kept for Personal Space; the documents come next."""
        now = self.clock()
        with self.db.transaction() as cur:
            _tx, signer, _current = self._enrolment_at(cur, signer_id, generation,
                                                     EnrolmentStep.CERTIFICATE)
            cur.execute("UPDATE enrolments SET step = ?, certificate = ?, updated_at = ? "
                        "WHERE signer_id = ?",
                        (EnrolmentStep.DONE.value, certificate, iso(now), signer_id))
            self._keep_certificate(cur, signer.email, hashlib.sha256(certificate).hexdigest(),
                                   certificate, chain, now)
