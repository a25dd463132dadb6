"""`signing_sessions` and their `session_documents`: a signer's prepared documents
between sign/prepare and sign/complete, and the completion that stores every signed
version at once."""

from __future__ import annotations

import datetime as dt
import json

from ground.sql import Cursor
from portal.errors import Code, PortalError
from portal.store.certificates import SignerCertificates
from portal.store.records import (
    Signer,
    SignerStatus,
    SigningSession,
    Transaction,
    TxStatus,
    ders,
    iso,
    new_id,
    unders,
)
from portal.store.signers import Signers
from portal.store.tables import one_row
from portal.store.turns import due


class SigningSessions(Signers, SignerCertificates):
    def open_signing_session(self, signer_id: str, generation: int, *, certificate: bytes,
                             chain: list[bytes], documents: list[tuple[str, int, str]],
                             hashes: list[str], ttl: dt.timedelta) -> SigningSession:
        """documents: (document id, base version, blob of the prepared state)."""
        now = self.clock()
        session_id = new_id()
        with self.db.transaction() as cur:
            tx, signer = self._signer_for_update(cur, signer_id, generation)
            self._require_open(tx, signer)
            if signer.status is not SignerStatus.ACCEPTED:
                raise PortalError(Code.WRONG_STEP, "read and accept the documents first")
            cur.execute("UPDATE signing_sessions SET state = 'abandoned' WHERE signer_id = ? "
                        "AND state = 'prepared'", (signer_id,))
            cur.execute("INSERT INTO signing_sessions (id, signer_id, generation, created_at, "
                        "expires_at, certificate, chain, hashes, state) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'prepared')",
                        (session_id, signer_id, generation, iso(now), iso(now + ttl),
                         certificate, ders(chain), json.dumps(hashes)))
            for position, (doc_id, base, prepared) in enumerate(documents):
                cur.execute("INSERT INTO session_documents (session_id, position, document_id,"
                            " base_version, prepared_sha256) VALUES (?, ?, ?, ?, ?)",
                            (session_id, position, doc_id, base, prepared))
            return self._session(cur, session_id)

    def signing_session(self, session_id: str) -> SigningSession:
        with self.db.transaction() as cur:
            return self._session(cur, session_id)

    def _session(self, cur: Cursor, session_id: str) -> SigningSession:
        row = one_row(cur, "SELECT id, signer_id, generation, expires_at, certificate, chain, "
                      "hashes, state FROM signing_sessions WHERE id = ?", (session_id,),
                      Code.SESSION_UNKNOWN)
        cur.execute("SELECT document_id, base_version, prepared_sha256 FROM session_documents"
                    " WHERE session_id = ? ORDER BY position", (session_id,))
        docs = tuple((d, int(b), p) for d, b, p in cur.fetchall())
        return SigningSession(row[0], row[1], row[2], dt.datetime.fromisoformat(row[3]),
                              bytes(row[4]), unders(row[5]), tuple(json.loads(row[6])),
                              row[7], docs)

    def complete_signing(self, session_id: str, signer_id: str, generation: int, *,
                         signed: list[tuple[str, str, int]], certificate_sha256: str
                         ) -> tuple[Transaction, list[Signer]]:
        """Store every signed version (doc id, blob sha256, size) at once, mark the signer
        signed; returns the transaction and the signers whose turn came (to invite)."""
        now = self.clock()
        with self.db.transaction() as cur:
            tx, signer = self._signer_for_update(cur, signer_id, generation)
            session = self._session(cur, session_id)
            if session.signer_id != signer_id or session.generation != generation:
                raise PortalError(Code.SESSION_UNKNOWN)
            if session.state != "prepared":
                raise PortalError(Code.SESSION_UNKNOWN, f"this signing session is "
                                  f"{session.state}")
            self._require_open(tx, signer)
            if session.expires_at <= now:
                raise PortalError(Code.SESSION_UNKNOWN, "this signing session expired")
            for (doc_id, base, _), (signed_id, sha, size) in zip(session.documents, signed,
                                                                  strict=True):
                assert doc_id == signed_id
                if tx.document(doc_id).current.version != base:
                    raise PortalError(Code.DOCUMENT_CHANGED, "another signer signed this "
                                      "document meanwhile: sign again")
                cur.execute("INSERT INTO document_versions (document_id, version, sha256, "
                            "size, signer_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                            (doc_id, base + 1, sha, size, signer_id, iso(now)))
            cur.execute("UPDATE signing_sessions SET state = 'completed' WHERE id = ?",
                        (session_id,))
            cur.execute("UPDATE signers SET status = ?, signed_at = ? WHERE id = ?",
                        (SignerStatus.SIGNED.value, iso(now), signer_id))
            self._keep_certificate(cur, signer.email, certificate_sha256,
                                   session.certificate, session.chain, now)
            after = self._load(cur, tx.id)
            next_signers = due(after.signers)
            if all(s.status is SignerStatus.SIGNED for s in after.signers):
                cur.execute("UPDATE transactions SET status = ?, closed_at = ? WHERE id = ?",
                            (TxStatus.COMPLETED.value, iso(now), tx.id))
            for waiting in next_signers:
                self._set_status(cur, waiting.id, SignerStatus.INVITED)
            after = self._load(cur, tx.id)
            return after, [after.signer(s.id) for s in next_signers]
