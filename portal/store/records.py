"""The portal's records as the store hands them out (frozen dataclasses, status enums),
and how their fields are kept in columns (ISO 8601 text, base64 JSON lists of DER)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from portal.errors import Code, PortalError


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
    CANCELLED = "cancelled"  # by the requester (portal/store/parameters.py)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def ders(values: list[bytes] | tuple[bytes, ...]) -> str:
    return json.dumps([base64.b64encode(v).decode() for v in values])


def unders(text: str) -> tuple[bytes, ...]:
    return tuple(base64.b64decode(v) for v in json.loads(text))


def json_dict(text: str | None) -> dict[str, Any] | None:
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
    turn: int = 0  # signers of one turn sign in parallel; turns follow each other


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
    sender_name: str | None = None  # the From's display name, when a workspace set one


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

