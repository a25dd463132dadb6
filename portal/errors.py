"""The portal's closed list of error codes (portal/API.md) and their HTTP statuses, in
one place. Pages translate by code; the message is English for logs and scripts."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    BAD_REQUEST = "BAD_REQUEST"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    LINK_INVALID = "LINK_INVALID"
    LINK_EXPIRED = "LINK_EXPIRED"
    LINK_REVOKED = "LINK_REVOKED"
    NOT_FOUND = "NOT_FOUND"
    NOT_YOUR_TURN = "NOT_YOUR_TURN"
    WRONG_STEP = "WRONG_STEP"
    CONSENT_OUTDATED = "CONSENT_OUTDATED"
    ALREADY_ACCEPTED = "ALREADY_ACCEPTED"
    ALREADY_SIGNED = "ALREADY_SIGNED"
    TRANSACTION_CLOSED = "TRANSACTION_CLOSED"
    DOCUMENT_CHANGED = "DOCUMENT_CHANGED"
    MESSAGING_DISABLED = "MESSAGING_DISABLED"
    NOT_QUALIFIED = "NOT_QUALIFIED"
    CERTIFICATE_NOT_SIGNERS = "CERTIFICATE_NOT_SIGNERS"
    PDF_INVALID = "PDF_INVALID"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    SESSION_UNKNOWN = "SESSION_UNKNOWN"
    HASHES_MISMATCH = "HASHES_MISMATCH"
    OTP_INVALID = "OTP_INVALID"
    OTP_EXPIRED = "OTP_EXPIRED"
    OTP_REPLAYED = "OTP_REPLAYED"
    OTP_THROTTLED = "OTP_THROTTLED"
    OTP_LOCKED = "OTP_LOCKED"
    NO_PHONE = "NO_PHONE"
    IDENTITY_NOT_VERIFIED = "IDENTITY_NOT_VERIFIED"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    NAME_NOT_ON_DOCUMENT = "NAME_NOT_ON_DOCUMENT"
    KEY_MISMATCH = "KEY_MISMATCH"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    CROSS_SITE = "CROSS_SITE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    DOCUMENT_NAME_INVALID = "DOCUMENT_NAME_INVALID"
    PDF_ACTIVE_CONTENT = "PDF_ACTIVE_CONTENT"
    DOCUMENT_NOT_ACCEPTED = "DOCUMENT_NOT_ACCEPTED"  # an identity document
    UNAVAILABLE = "UNAVAILABLE"
    NOT_A_PDF = "NOT_A_PDF"
    PDF_ENCRYPTED = "PDF_ENCRYPTED"
    RATE_LIMITED = "RATE_LIMITED"
    CONFLICT = "CONFLICT"  # saved by someone else meanwhile (a template, an identity session)
    CSV_INVALID = "CSV_INVALID"  # a bulk send's CSV: `errors` names each line and column
    DOWNLOAD_DISABLED = "DOWNLOAD_DISABLED"  # unsigned documents, by the transaction
    LEVEL_UNAVAILABLE = "LEVEL_UNAVAILABLE"  # B-T and above need a time-stamping service
    INTERNAL = "INTERNAL"


STATUS: dict[Code, int] = {
    Code.BAD_REQUEST: 400, Code.UNAUTHORIZED: 401, Code.FORBIDDEN: 403,
    Code.LINK_INVALID: 403,
    Code.LINK_EXPIRED: 410, Code.LINK_REVOKED: 410, Code.NOT_FOUND: 404,
    Code.NOT_YOUR_TURN: 409, Code.WRONG_STEP: 409, Code.CONSENT_OUTDATED: 409,
    Code.ALREADY_ACCEPTED: 409, Code.ALREADY_SIGNED: 409, Code.TRANSACTION_CLOSED: 409,
    Code.DOCUMENT_CHANGED: 409, Code.MESSAGING_DISABLED: 403, Code.NOT_QUALIFIED: 422,
    Code.CERTIFICATE_NOT_SIGNERS: 422, Code.PDF_INVALID: 422, Code.SIGNATURE_INVALID: 422,
    Code.SESSION_UNKNOWN: 404,
    Code.HASHES_MISMATCH: 409, Code.OTP_INVALID: 401, Code.OTP_EXPIRED: 410,
    Code.OTP_REPLAYED: 409, Code.OTP_THROTTLED: 429, Code.OTP_LOCKED: 423,
    Code.NO_PHONE: 409, Code.IDENTITY_NOT_VERIFIED: 409, Code.IDENTITY_MISMATCH: 409,
    Code.NAME_NOT_ON_DOCUMENT: 422, Code.KEY_MISMATCH: 409, Code.PAYLOAD_TOO_LARGE: 413,
    Code.UNAVAILABLE: 503,
    Code.CROSS_SITE: 403, Code.UNSUPPORTED_MEDIA_TYPE: 415, Code.DOCUMENT_NAME_INVALID: 400,
    Code.PDF_ACTIVE_CONTENT: 422, Code.DOCUMENT_NOT_ACCEPTED: 422,
    Code.CONFLICT: 409, Code.CSV_INVALID: 400, Code.DOWNLOAD_DISABLED: 403,
    Code.LEVEL_UNAVAILABLE: 422,
    Code.NOT_A_PDF: 422, Code.PDF_ENCRYPTED: 422, Code.RATE_LIMITED: 429,
    Code.INTERNAL: 500,
}

_DEFAULT_MESSAGES: dict[Code, str] = {
    Code.UNAUTHORIZED: "a valid bearer token is required",
    Code.FORBIDDEN: "your role does not allow this",
    Code.LINK_INVALID: "this link is not valid",
    Code.LINK_EXPIRED: "this link has expired",
    Code.LINK_REVOKED: "this link was replaced by a newer one",
    Code.NOT_FOUND: "no such resource",
    Code.NOT_YOUR_TURN: "another signer signs first",
    Code.ALREADY_ACCEPTED: "the documents were accepted: unsigned copies are no longer "
                           "available unless the process is restarted",
    Code.ALREADY_SIGNED: "you have already signed",
    Code.TRANSACTION_CLOSED: "this transaction is closed",
    Code.MESSAGING_DISABLED: "messaging is off for this transaction",
    Code.CERTIFICATE_NOT_SIGNERS: "this certificate was not issued to the invited signer",
    Code.OTP_INVALID: "wrong code",
    Code.OTP_EXPIRED: "the code has expired: ask for a new one",
    Code.OTP_REPLAYED: "this code was already used",
    Code.OTP_THROTTLED: "too many attempts: wait before trying again",
    Code.OTP_LOCKED: "too many wrong codes: ask for a new one later",
    Code.CROSS_SITE: "this request comes from another site",
    Code.RATE_LIMITED: "too many requests from this address: wait before trying again",
    Code.INTERNAL: "internal error",
}


# The validation package's refusals (validation/errors.py ValidationError.code).
VALIDATION_CODES: dict[str, Code] = {
    "NOT_A_PDF": Code.NOT_A_PDF, "MALFORMED_PDF": Code.PDF_INVALID,
    "TOO_LARGE": Code.PAYLOAD_TOO_LARGE, "ENCRYPTED_PDF": Code.PDF_ENCRYPTED,
}


class PortalError(Exception):
    def __init__(self, code: Code, message: str | None = None, **extra: Any) -> None:
        super().__init__(message or _DEFAULT_MESSAGES.get(code, code.value.lower()))
        self.code = code
        self.extra = extra

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def body(self) -> dict[str, Any]:
        return {"error": self.code.value, "message": str(self), **self.extra}
