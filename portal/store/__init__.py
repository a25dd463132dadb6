"""The portal's records: transactions, their documents (every signed version), signers,
consents, messages, signing sessions, enrolments, SMS OTP sessions, the outbox and
Personal Space sessions. SQLite by default, PostgreSQL through the same code (ground.sql);
the schema is portal/migrations/, applied when the store opens (ground.migrations).

Each table's queries live in a module named after it (transactions.py for transactions
and their documents, signers.py for signers and consents, signing_sessions.py,
enrolments.py, messages.py, otp_sessions.py, outbox.py, certificates.py, space.py);
`Store` is all of them on one database. Each public method is one database transaction
and enforces the signer's journey (consent -> documents -> sign), so a request that
arrives out of order, twice, or after a crash finds the state it expects or a typed
error. Document bytes live in the blob store and are written before any row names them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from ground.migrations import Migrated, Schema, migrate, open_migrated
from portal.store.enrolments import Enrolments
from portal.store.identity_frames import IdentityFrames
from portal.store.identity_sessions import IdentitySessions
from portal.store.otp_sessions import OtpSessions
from portal.store.outbox import Outbox
from portal.store.parameters import Parameters
from portal.store.records import (
    Consent,
    Document,
    DocumentVersion,
    Enrolment,
    EnrolmentStep,
    Mail,
    Message,
    NewDocument,
    NewSigner,
    OtpSession,
    Signer,
    SignerStatus,
    SigningSession,
    Transaction,
    TxStatus,
    new_id,
    ordered_id,
    utcnow,
)
from portal.store.signing_sessions import SigningSessions
from portal.store.space import PersonalSpace
from portal.store.templates import Templates
from portal.store.validation_reports import ValidationReports
from portal.store.webhooks import Webhooks
from portal.store.workspace_mail import WorkspaceMail

__all__ = [
    "SCHEMA", "Consent", "Document", "DocumentVersion", "Enrolment", "EnrolmentStep", "Mail",
    "Message", "NewDocument", "NewSigner", "OtpSession", "Signer", "SignerStatus",
    "SigningSession", "Store", "Transaction", "TxStatus", "migrate_database", "new_id",
    "ordered_id", "utcnow",
]

SCHEMA = Schema("portal", "portal")  # portal/migrations/portal-NNNN-*.sql


def migrate_database(url: str | None, state_dir: Path) -> Migrated:
    """Bring the portal's database to the head of its migrations (`qsign portal
    migrate`; `Store.open` does it too)."""
    return migrate(url, state_dir / "portal.sqlite", SCHEMA)


class Store(SigningSessions, Enrolments, OtpSessions, Outbox, PersonalSpace, Parameters,
            Templates, Webhooks, WorkspaceMail, IdentitySessions, IdentityFrames,
            ValidationReports):
    """Every table's queries on one database."""

    @classmethod
    def open(cls, url: str | None, state_dir: Path,
             clock: Callable[[], dt.datetime] = utcnow) -> Store:
        return cls(open_migrated(url, state_dir / "portal.sqlite", SCHEMA), clock)
