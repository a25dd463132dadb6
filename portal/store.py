"""The portal's records: transactions, their documents (every signed version), signers,
consents, messages, signing sessions, SMS OTP sessions, the outbox and Personal Space
sessions. SQLite by default, PostgreSQL through the same code (ground.sql).

Each public method is one database transaction and enforces the signer's journey
(consent -> documents -> sign), so a request that arrives out of order, twice, or after
a crash finds the state it expects or a typed error. Document bytes live in the blob
store and are written before any row names them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ground.sql import Cursor, Database
from portal.errors import Code, PortalError

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS transactions (
        id TEXT PRIMARY KEY, title TEXT NOT NULL, requester_name TEXT NOT NULL,
        requester_email TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL, sequential INTEGER NOT NULL, qualified INTEGER NOT NULL,
        messaging INTEGER NOT NULL, level TEXT NOT NULL, closed_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS documents (
        id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL REFERENCES transactions(id),
        position INTEGER NOT NULL, name TEXT NOT NULL, pages INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS document_versions (
        document_id TEXT NOT NULL REFERENCES documents(id), version INTEGER NOT NULL,
        sha256 TEXT NOT NULL, size BIGINT NOT NULL, signer_id TEXT, created_at TEXT NOT NULL,
        PRIMARY KEY (document_id, version))""",
    """CREATE TABLE IF NOT EXISTS signers (
        id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL REFERENCES transactions(id),
        position INTEGER NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL,
        phone TEXT NOT NULL, lang TEXT NOT NULL, status TEXT NOT NULL,
        generation INTEGER NOT NULL, refusal_reason TEXT, accepted_at TEXT,
        signed_at TEXT, otp_locked_until TEXT)""",
    """CREATE TABLE IF NOT EXISTS consents (
        signer_id TEXT NOT NULL REFERENCES signers(id), generation INTEGER NOT NULL,
        kind TEXT NOT NULL, version TEXT NOT NULL, lang TEXT NOT NULL,
        sha256 TEXT NOT NULL, accepted_at TEXT NOT NULL,
        PRIMARY KEY (signer_id, generation, kind))""",
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL REFERENCES transactions(id),
        author TEXT NOT NULL, signer_id TEXT, name TEXT NOT NULL, text TEXT NOT NULL,
        at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS signing_sessions (
        id TEXT PRIMARY KEY, signer_id TEXT NOT NULL REFERENCES signers(id),
        generation INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        certificate BYTEA NOT NULL, chain TEXT NOT NULL, hashes TEXT NOT NULL,
        state TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS session_documents (
        session_id TEXT NOT NULL REFERENCES signing_sessions(id),
        position INTEGER NOT NULL, document_id TEXT NOT NULL, base_version INTEGER NOT NULL,
        prepared_sha256 TEXT NOT NULL, PRIMARY KEY (session_id, position))""",
    """CREATE TABLE IF NOT EXISTS otp_sessions (
        id TEXT PRIMARY KEY, purpose TEXT NOT NULL, subject TEXT NOT NULL,
        phone TEXT NOT NULL, hashes TEXT NOT NULL, code_digest TEXT,
        sent_at TEXT, expires_at TEXT, sends INTEGER NOT NULL, failures INTEGER NOT NULL,
        next_try_at TEXT, used_at TEXT, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox_sms (
        id TEXT PRIMARY KEY, to_phone TEXT NOT NULL, text TEXT NOT NULL, at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox_mail (
        id TEXT PRIMARY KEY, to_addr TEXT NOT NULL, subject TEXT NOT NULL,
        body TEXT NOT NULL, at TEXT NOT NULL, attempts INTEGER NOT NULL,
        sent_at TEXT, last_error TEXT)""",
    """CREATE TABLE IF NOT EXISTS signer_certificates (
        email TEXT NOT NULL, sha256 TEXT NOT NULL, der BYTEA NOT NULL, chain TEXT NOT NULL,
        first_used TEXT NOT NULL, PRIMARY KEY (email, sha256))""",
    """CREATE TABLE IF NOT EXISTS enrolments (
        signer_id TEXT PRIMARY KEY REFERENCES signers(id), step TEXT NOT NULL,
        identity_session TEXT, identity TEXT, comparison TEXT, auth TEXT,
        spki_sha256 TEXT, certificate BYTEA, updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS space_sessions (
        digest TEXT PRIMARY KEY, email TEXT NOT NULL, expires_at TEXT NOT NULL)""",
)


class SignerStatus(StrEnum):
    WAITING = "waiting"
    INVITED = "invited"
    CONSENTED = "consented"
    ACCEPTED = "accepted"
    SIGNED = "signed"
    REFUSED = "refused"


class EnrolmentStep(StrEnum):
    PERSONAL_DATA = "personal-data"
    ISSUANCE_CONSENTS = "issuance-consents"
    IDENTITY = "identity"
    IDENTITY_CONFIRM = "identity-confirm"
    AUTH_DATA = "auth-data"
    PIN = "pin"
    CERTIFICATE = "certificate"
    DONE = "done"


class TxStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    REFUSED = "refused"
    EXPIRED = "expired"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _ders(values: list[bytes] | tuple[bytes, ...]) -> str:
    return json.dumps([base64.b64encode(v).decode() for v in values])


def _unders(text: str) -> tuple[bytes, ...]:
    return tuple(base64.b64decode(v) for v in json.loads(text))


def _json(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def new_id() -> str:
    return secrets.token_urlsafe(12)


def ordered_id() -> str:
    """An id that sorts by creation (the wall clock in ns, then randomness): messages and
    the outbox keep their order even when a test clock stands still."""
    return f"{time.time_ns():020d}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class DocumentVersion:
    version: int
    sha256: str
    size: int
    signer_id: str | None


@dataclass(frozen=True)
class Document:
    id: str
    name: str
    position: int
    pages: int
    versions: tuple[DocumentVersion, ...]

    @property
    def original(self) -> DocumentVersion:
        return self.versions[0]

    @property
    def current(self) -> DocumentVersion:
        return self.versions[-1]


@dataclass(frozen=True)
class Signer:
    id: str
    transaction_id: str
    position: int
    name: str
    email: str
    phone: str
    lang: str
    status: SignerStatus
    generation: int
    refusal_reason: str | None
    accepted_at: dt.datetime | None
    signed_at: dt.datetime | None
    otp_locked_until: dt.datetime | None


@dataclass(frozen=True)
class Transaction:
    id: str
    title: str
    requester_name: str
    requester_email: str
    status: TxStatus
    created_at: dt.datetime
    expires_at: dt.datetime
    sequential: bool
    qualified: bool
    messaging: bool
    level: str
    documents: tuple[Document, ...] = ()
    signers: tuple[Signer, ...] = ()

    def signer(self, signer_id: str) -> Signer:
        for s in self.signers:
            if s.id == signer_id:
                return s
        raise PortalError(Code.NOT_FOUND, "no such signer")

    def document(self, document_id: str) -> Document:
        for d in self.documents:
            if d.id == document_id:
                return d
        raise PortalError(Code.NOT_FOUND, "no such document")


@dataclass(frozen=True)
class Enrolment:
    step: EnrolmentStep
    identity_session: str | None
    identity: dict[str, Any] | None
    comparison: dict[str, Any] | None
    auth: dict[str, Any] | None
    spki_sha256: str | None
    certificate: bytes | None


@dataclass(frozen=True)
class Message:
    id: str
    author: str
    signer_id: str | None
    name: str
    text: str
    at: dt.datetime


@dataclass(frozen=True)
class Consent:
    kind: str
    version: str
    lang: str
    sha256: str
    accepted_at: dt.datetime


@dataclass(frozen=True)
class NewSigner:
    name: str
    email: str
    phone: str
    lang: str


@dataclass(frozen=True)
class NewDocument:
    name: str
    sha256: str
    size: int
    pages: int


@dataclass(frozen=True)
class Mail:
    id: str
    to: str
    subject: str
    body: str
    at: dt.datetime
    attempts: int
    sent_at: dt.datetime | None
    last_error: str | None


@dataclass(frozen=True)
class SigningSession:
    id: str
    signer_id: str
    generation: int
    expires_at: dt.datetime
    certificate: bytes
    chain: tuple[bytes, ...]
    hashes: tuple[str, ...]  # base64, one per document in `documents` order
    state: str
    documents: tuple[tuple[str, int, str], ...] = field(default=())  # (doc id, base, prepared)


@dataclass(frozen=True)
class OtpSession:
    id: str
    purpose: str  # "sign" | "space"
    subject: str  # the signing session id, or the e-mail address for Personal Space
    phone: str
    hashes: tuple[str, ...]
    code_digest: str | None
    sent_at: dt.datetime | None
    expires_at: dt.datetime | None
    sends: int
    failures: int
    next_try_at: dt.datetime | None
    used_at: dt.datetime | None


class Store:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow
                 ) -> None:
        self.db = database
        self.clock = clock

    @classmethod
    def open(cls, url: str | None, state_dir: Path,
             clock: Callable[[], dt.datetime] = utcnow) -> Store:
        return cls(Database.open(url, state_dir / "portal.sqlite", _SCHEMA), clock)

    def close(self) -> None:
        self.db.close()

    # Transactions -----------------------------------------------------------------

    def create_transaction(self, *, title: str, requester_name: str, requester_email: str,
                           documents: list[NewDocument], signers: list[NewSigner],
                           sequential: bool, expires_in: dt.timedelta, qualified: bool,
                           messaging: bool, level: str) -> Transaction:
        now = self.clock()
        tx_id = new_id()
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO transactions (id, title, requester_name, requester_email, "
                "status, created_at, expires_at, sequential, qualified, messaging, level) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tx_id, title, requester_name, requester_email, TxStatus.OPEN.value,
                 _iso(now), _iso(now + expires_in), int(sequential), int(qualified),
                 int(messaging), level))
            for position, doc in enumerate(documents):
                doc_id = new_id()
                cur.execute("INSERT INTO documents (id, transaction_id, position, name, pages)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (doc_id, tx_id, position, doc.name, doc.pages))
                cur.execute("INSERT INTO document_versions (document_id, version, sha256, "
                            "size, signer_id, created_at) VALUES (?, 0, ?, ?, NULL, ?)",
                            (doc_id, doc.sha256, doc.size, _iso(now)))
            for position, signer in enumerate(signers):
                first = position == 0 or not sequential
                cur.execute(
                    "INSERT INTO signers (id, transaction_id, position, name, email, phone, "
                    "lang, status, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                    (new_id(), tx_id, position, signer.name, signer.email, signer.phone,
                     signer.lang,
                     (SignerStatus.INVITED if first else SignerStatus.WAITING).value))
            return self._load(cur, tx_id)

    def transaction(self, tx_id: str) -> Transaction:
        with self.db.transaction() as cur:
            return self._load(cur, tx_id)

    def transaction_of_signer(self, signer_id: str) -> Transaction:
        with self.db.transaction() as cur:
            cur.execute("SELECT transaction_id FROM signers WHERE id = ?", (signer_id,))
            row = cur.fetchone()
            if row is None:
                raise PortalError(Code.LINK_INVALID)
            return self._load(cur, row[0])

    def transactions(self) -> list[Transaction]:
        with self.db.transaction() as cur:
            cur.execute("SELECT id FROM transactions ORDER BY created_at DESC, id")
            return [self._load(cur, row[0]) for row in cur.fetchall()]

    def expire_due(self) -> list[Transaction]:
        """Close open transactions whose expiry passed; returns them (to notify)."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("SELECT id FROM transactions WHERE status = ? AND expires_at <= ?",
                        (TxStatus.OPEN.value, _iso(now)))
            due = [row[0] for row in cur.fetchall()]
            for tx_id in due:
                cur.execute("UPDATE transactions SET status = ?, closed_at = ? WHERE id = ?",
                            (TxStatus.EXPIRED.value, _iso(now), tx_id))
            return [self._load(cur, tx_id) for tx_id in due]

    def _load(self, cur: Cursor, tx_id: str) -> Transaction:
        cur.execute("SELECT id, title, requester_name, requester_email, status, created_at, "
                    "expires_at, sequential, qualified, messaging, level FROM transactions "
                    "WHERE id = ?", (tx_id,))
        row = cur.fetchone()
        if row is None:
            raise PortalError(Code.NOT_FOUND, "no such transaction")
        cur.execute("SELECT d.id, d.name, d.position, d.pages, v.version, v.sha256, v.size, "
                    "v.signer_id FROM documents d JOIN document_versions v "
                    "ON v.document_id = d.id WHERE d.transaction_id = ? "
                    "ORDER BY d.position, v.version", (tx_id,))
        docs: dict[str, tuple[str, int, int, list[DocumentVersion]]] = {}
        for doc_id, name, position, pages, version, sha, size, signer_id in cur.fetchall():
            docs.setdefault(doc_id, (name, position, pages, []))[3].append(
                DocumentVersion(version, sha, int(size), signer_id))
        cur.execute("SELECT id, transaction_id, position, name, email, phone, lang, status, "
                    "generation, refusal_reason, accepted_at, signed_at, otp_locked_until "
                    "FROM signers WHERE transaction_id = ? ORDER BY position", (tx_id,))
        signers = tuple(
            Signer(s[0], s[1], s[2], s[3], s[4], s[5], s[6], SignerStatus(s[7]), s[8], s[9],
                   _when(s[10]), _when(s[11]), _when(s[12])) for s in cur.fetchall())
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

    # The signer's journey -------------------------------------------------------------

    def _signer_for_update(self, cur: Cursor, signer_id: str, generation: int
                           ) -> tuple[Transaction, Signer]:
        cur.execute("SELECT transaction_id FROM signers WHERE id = ?", (signer_id,))
        row = cur.fetchone()
        if row is None:
            raise PortalError(Code.LINK_INVALID)
        tx = self._load(cur, row[0])
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
                            (SignerStatus.ACCEPTED.value, _iso(self.clock()), signer_id))

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
                        (TxStatus.REFUSED.value, _iso(now), tx.id))
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
                        (signer_id, generation, kind, version, lang, sha, _iso(now)))

    def _set_status(self, cur: Cursor, signer_id: str, status: SignerStatus) -> None:
        cur.execute("UPDATE signers SET status = ? WHERE id = ?", (status.value, signer_id))

    def set_otp_lock(self, signer_id: str, until: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE signers SET otp_locked_until = ? WHERE id = ?",
                        (_iso(until), signer_id))

    # Signing ------------------------------------------------------------------------

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
                        (session_id, signer_id, generation, _iso(now), _iso(now + ttl),
                         certificate, _ders(chain), json.dumps(hashes)))
            for position, (doc_id, base, prepared) in enumerate(documents):
                cur.execute("INSERT INTO session_documents (session_id, position, document_id,"
                            " base_version, prepared_sha256) VALUES (?, ?, ?, ?, ?)",
                            (session_id, position, doc_id, base, prepared))
            return self._session(cur, session_id)

    def signing_session(self, session_id: str) -> SigningSession:
        with self.db.transaction() as cur:
            return self._session(cur, session_id)

    def _session(self, cur: Cursor, session_id: str) -> SigningSession:
        cur.execute("SELECT id, signer_id, generation, expires_at, certificate, chain, "
                    "hashes, state FROM signing_sessions WHERE id = ?", (session_id,))
        row = cur.fetchone()
        if row is None:
            raise PortalError(Code.SESSION_UNKNOWN)
        cur.execute("SELECT document_id, base_version, prepared_sha256 FROM session_documents"
                    " WHERE session_id = ? ORDER BY position", (session_id,))
        docs = tuple((d, int(b), p) for d, b, p in cur.fetchall())
        return SigningSession(row[0], row[1], row[2], dt.datetime.fromisoformat(row[3]),
                              bytes(row[4]), _unders(row[5]), tuple(json.loads(row[6])),
                              row[7], docs)

    def complete_signing(self, session_id: str, signer_id: str, generation: int, *,
                         signed: list[tuple[str, str, int]], certificate_sha256: str
                         ) -> tuple[Transaction, Signer | None]:
        """Store every signed version (doc id, blob sha256, size) at once, mark the signer
        signed; returns the transaction and the next signer to invite, if any."""
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
                            (doc_id, base + 1, sha, size, signer_id, _iso(now)))
            cur.execute("UPDATE signing_sessions SET state = 'completed' WHERE id = ?",
                        (session_id,))
            cur.execute("UPDATE signers SET status = ?, signed_at = ? WHERE id = ?",
                        (SignerStatus.SIGNED.value, _iso(now), signer_id))
            cur.execute("INSERT INTO signer_certificates (email, sha256, der, chain, "
                        "first_used) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (email, sha256) DO NOTHING",
                        (signer.email.lower(), certificate_sha256, session.certificate,
                         _ders(session.chain), _iso(now)))
            after = self._load(cur, tx.id)
            next_signer = None
            if all(s.status is SignerStatus.SIGNED for s in after.signers):
                cur.execute("UPDATE transactions SET status = ?, closed_at = ? WHERE id = ?",
                            (TxStatus.COMPLETED.value, _iso(now), tx.id))
            elif tx.sequential:
                waiting = [s for s in after.signers if s.status is SignerStatus.WAITING]
                if waiting:
                    next_signer = waiting[0]
                    self._set_status(cur, next_signer.id, SignerStatus.INVITED)
            return self._load(cur, tx.id), next_signer

    # First-time enrolment ---------------------------------------------------------

    def _enrolment(self, cur: Cursor, signer_id: str) -> Enrolment | None:
        cur.execute("SELECT step, identity_session, identity, comparison, auth, spki_sha256, "
                    "certificate FROM enrolments WHERE signer_id = ?", (signer_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return Enrolment(EnrolmentStep(row[0]), row[1], _json(row[2]), _json(row[3]),
                         _json(row[4]), row[5], None if row[6] is None else bytes(row[6]))

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
                                             _iso(self.clock())))

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
                        ((step or expected).value, _iso(self.clock()), *params, signer_id))
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
                        (EnrolmentStep.ISSUANCE_CONSENTS.value, _iso(self.clock()),
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
                        (EnrolmentStep.IDENTITY.value, _iso(now), signer_id))

    def finish_enrolment(self, signer_id: str, generation: int, certificate: bytes,
                         chain: list[bytes]) -> None:
        """The issued certificate: kept for Personal Space; the documents come next."""
        import hashlib

        now = self.clock()
        with self.db.transaction() as cur:
            _tx, signer, _current = self._enrolment_at(cur, signer_id, generation,
                                                     EnrolmentStep.CERTIFICATE)
            cur.execute("UPDATE enrolments SET step = ?, certificate = ?, updated_at = ? "
                        "WHERE signer_id = ?",
                        (EnrolmentStep.DONE.value, certificate, _iso(now), signer_id))
            cur.execute("INSERT INTO signer_certificates (email, sha256, der, chain, "
                        "first_used) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (email, sha256) DO NOTHING",
                        (signer.email.lower(), hashlib.sha256(certificate).hexdigest(),
                         certificate, _ders(chain), _iso(now)))

    # Messages -----------------------------------------------------------------------

    def _add_message(self, cur: Cursor, tx_id: str, author: str, signer_id: str | None,
                     name: str, text: str) -> Message:
        message = Message(ordered_id(), author, signer_id, name, text, self.clock())
        cur.execute("INSERT INTO messages (id, transaction_id, author, signer_id, name, text, "
                    "at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (message.id, tx_id, author, signer_id, name, text, _iso(message.at)))
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

    # SMS OTP sessions ---------------------------------------------------------------

    def new_otp_session(self, *, purpose: str, subject: str, phone: str,
                        hashes: list[str]) -> str:
        otp_id = secrets.token_urlsafe(24)
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO otp_sessions (id, purpose, subject, phone, hashes, sends, "
                        "failures, created_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?)",
                        (otp_id, purpose, subject, phone, json.dumps(hashes),
                         _iso(self.clock())))
        return otp_id

    def otp_session(self, cur: Cursor, otp_id: str) -> OtpSession:
        cur.execute("SELECT id, purpose, subject, phone, hashes, code_digest, sent_at, "
                    "expires_at, sends, failures, next_try_at, used_at FROM otp_sessions "
                    "WHERE id = ?", (otp_id,))
        row = cur.fetchone()
        if row is None:
            raise PortalError(Code.SESSION_UNKNOWN)
        return OtpSession(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5],
                          _when(row[6]), _when(row[7]), row[8], row[9], _when(row[10]),
                          _when(row[11]))

    def update_otp_session(self, cur: Cursor, otp_id: str, **values: Any) -> None:
        allowed = {"code_digest", "sent_at", "expires_at", "sends", "failures",
                   "next_try_at", "used_at"}
        assert set(values) <= allowed
        columns = sorted(values)
        assignments = ", ".join(f"{c} = ?" for c in columns)
        cur.execute(f"UPDATE otp_sessions SET {assignments} WHERE id = ?",  # noqa: S608
                    (*(_iso(v) if isinstance(v, dt.datetime) else v
                       for v in (values[c] for c in columns)), otp_id))

    def code_verified(self, signing_session_id: str) -> bool:
        """Was the SMS code of this signing session accepted?"""
        with self.db.transaction() as cur:
            cur.execute("SELECT 1 FROM otp_sessions WHERE purpose = 'sign' AND subject = ? "
                        "AND used_at IS NOT NULL", (signing_session_id,))
            return cur.fetchone() is not None

    def sms_sent_since(self, cur: Cursor, phone: str, since: dt.datetime) -> int:
        cur.execute("SELECT COUNT(*) FROM outbox_sms WHERE to_phone = ? AND at >= ?",
                    (phone, _iso(since)))
        return int(cur.fetchone()[0])

    # Outbox -------------------------------------------------------------------------

    def add_sms(self, cur: Cursor, to: str, text: str) -> None:
        cur.execute("INSERT INTO outbox_sms (id, to_phone, text, at) VALUES (?, ?, ?, ?)",
                    (ordered_id(), to, text, _iso(self.clock())))

    def sms(self, to: str | None = None) -> list[tuple[str, str, dt.datetime]]:
        with self.db.transaction() as cur:
            if to is None:
                cur.execute("SELECT to_phone, text, at FROM outbox_sms ORDER BY id")
            else:
                cur.execute("SELECT to_phone, text, at FROM outbox_sms WHERE to_phone = ? "
                            "ORDER BY id", (to,))
            return [(p, t, dt.datetime.fromisoformat(at)) for p, t, at in cur.fetchall()]

    def queue_mail(self, to: str, subject: str, body: str) -> str:
        mail_id = ordered_id()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO outbox_mail (id, to_addr, subject, body, at, attempts) "
                        "VALUES (?, ?, ?, ?, ?, 0)",
                        (mail_id, to, subject, body, _iso(self.clock())))
        return mail_id

    def mails(self, *, pending: bool = False, to: str | None = None) -> list[Mail]:
        with self.db.transaction() as cur:
            cur.execute("SELECT id, to_addr, subject, body, at, attempts, sent_at, last_error "
                        "FROM outbox_mail WHERE (? = 0 OR sent_at IS NULL) "
                        "AND (? = '' OR to_addr = ?) ORDER BY id",
                        (int(pending), to or "", to or ""))
            return [Mail(i, t, s, b, dt.datetime.fromisoformat(at), n, _when(sent), err)
                    for i, t, s, b, at, n, sent, err in cur.fetchall()]

    def mail_attempted(self, mail_id: str, error: str | None) -> None:
        with self.db.transaction() as cur:
            if error is None:
                cur.execute("UPDATE outbox_mail SET attempts = attempts + 1, sent_at = ?, "
                            "last_error = NULL WHERE id = ?", (_iso(self.clock()), mail_id))
            else:
                cur.execute("UPDATE outbox_mail SET attempts = attempts + 1, last_error = ? "
                            "WHERE id = ?", (error[:500], mail_id))

    # Personal Space -----------------------------------------------------------------

    def signer_records(self, email: str) -> list[tuple[Transaction, Signer]]:
        with self.db.transaction() as cur:
            cur.execute("SELECT transaction_id, id FROM signers WHERE lower(email) = ? "
                        "ORDER BY position", (email.lower(),))
            found = []
            for tx_id, signer_id in cur.fetchall():
                tx = self._load(cur, tx_id)
                found.append((tx, tx.signer(signer_id)))
            return found

    def certificates_of(self, email: str) -> list[tuple[bytes, tuple[bytes, ...]]]:
        """(certificate, its chain) for each certificate this address signed with."""
        with self.db.transaction() as cur:
            cur.execute("SELECT der, chain FROM signer_certificates WHERE email = ? "
                        "ORDER BY first_used", (email.lower(),))
            return [(bytes(der), _unders(chain)) for der, chain in cur.fetchall()]

    def add_space_session(self, digest: str, email: str, expires_at: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO space_sessions (digest, email, expires_at) "
                        "VALUES (?, ?, ?)", (digest, email.lower(), _iso(expires_at)))

    def space_session(self, digest: str) -> str | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT email, expires_at FROM space_sessions WHERE digest = ?",
                        (digest,))
            row = cur.fetchone()
        if row is None or dt.datetime.fromisoformat(row[1]) <= self.clock():
            return None
        return str(row[0])
