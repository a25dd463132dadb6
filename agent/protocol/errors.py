"""The closed list of wire errors, and the one mapping from domain errors to them.

Internal details go to the log, never to the page: an unexpected exception is
INTERNAL with no message beyond that.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

from agent import confirmations, errors
from agent.identity import otp
from agent.identity.enrolment import EnrolmentFailed, EnrolmentUnknown
from agent.pades import PdfRefused
from agent.tokens import errors as token_errors

log = logging.getLogger(__name__)


class ErrorCode(Enum):
    """(JSON-RPC code, default message). -32768..-32000 is JSON-RPC's; ours are -31xxx."""

    PARSE_ERROR = (-32700, "message is not JSON")
    INVALID_REQUEST = (-32600, "not a JSON-RPC 2.0 request")
    METHOD_NOT_FOUND = (-32601, "unknown method")
    INVALID_PARAMS = (-32602, "invalid params")
    INTERNAL = (-32603, "internal error")
    BAD_REQUEST = (-31000, "bad request")
    ORIGIN_NOT_ALLOWED = (-31001, "origin not allowed")
    NOT_PAIRED = (-31002, "origin not paired")
    RATE_LIMITED = (-31003, "too many requests")
    TOKEN_NOT_FOUND = (-31010, "no such token")
    TOKEN_REMOVED = (-31011, "the token was removed")
    TOKEN_ERROR = (-31012, "the token failed")
    KEY_NOT_FOUND = (-31013, "no such credential")
    UNSUPPORTED = (-31014, "not supported by this token")
    INVALID_PIN = (-31020, "wrong PIN")
    PIN_BLOCKED = (-31021, "PIN blocked")
    PUK_BLOCKED = (-31022, "PUK blocked")
    INVALID_PIN_FORMAT = (-31023, "the PIN does not fit the token's rules")
    NOT_AUTHENTICATED = (-31024, "PIN required")
    PIN_STATE_LOST = (-31025, "the token was reset; enter the PIN again")
    PIN_PAD = (-31026, "the token takes its PIN on its own PIN pad")
    INVALID_OTP = (-31030, "wrong one-time password")
    OTP_THROTTLED = (-31031, "too many wrong one-time passwords")
    OTP_EXPIRED = (-31032, "the one-time password has expired; ask for a new one")
    OTP_UNAVAILABLE = (-31033, "the SMS one-time password service is unavailable")
    OTP_METHOD_NOT_ALLOWED = (-31034, "this kind of one-time password is not accepted here")
    SAD_INVALID = (-31040, "signature activation data invalid")
    ENROLMENT_REFUSED = (-31050, "the certification authority refused the request")
    CA_UNAVAILABLE = (-31051, "the certification authority cannot be reached")
    ENROLMENT_UNKNOWN = (-31052, "no such enrolment")
    SECOND_FACTOR_REQUIRED = (-31060, "prove the second factor for this token first")
    CONFIRMATION_REQUIRED = (-31061, "confirm this request outside the page")

    @property
    def rpc_code(self) -> int:
        return self.value[0]

    @property
    def default_message(self) -> str:
        return self.value[1]


class RpcError(Exception):
    def __init__(self, code: ErrorCode, message: str | None = None,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(message or code.default_message)
        self.code = code
        self.message = message or code.default_message
        self.data = data or {}

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code.rpc_code, "message": self.message,
                "data": {"error": self.code.name, **self.data}}


_TOKEN_ERRORS: list[tuple[type[Exception], ErrorCode]] = [
    (token_errors.TokenNotFound, ErrorCode.TOKEN_NOT_FOUND),
    (token_errors.TokenRemoved, ErrorCode.TOKEN_REMOVED),
    (token_errors.InvalidPin, ErrorCode.INVALID_PIN),
    (token_errors.InvalidPuk, ErrorCode.INVALID_PIN),
    (token_errors.PinBlocked, ErrorCode.PIN_BLOCKED),
    (token_errors.PukBlocked, ErrorCode.PUK_BLOCKED),
    (token_errors.PinFormatInvalid, ErrorCode.INVALID_PIN_FORMAT),
    (token_errors.PinStateLost, ErrorCode.PIN_STATE_LOST),  # before its base class
    (token_errors.NotAuthenticated, ErrorCode.NOT_AUTHENTICATED),
    (token_errors.ProtectedAuthenticationPath, ErrorCode.PIN_PAD),
    (token_errors.KeyNotFound, ErrorCode.KEY_NOT_FOUND),
    (token_errors.CredentialIdInvalid, ErrorCode.INVALID_PARAMS),  # before InvalidInput
    (token_errors.UnsupportedMechanism, ErrorCode.UNSUPPORTED),
    (token_errors.InvalidInput, ErrorCode.BAD_REQUEST),
    (token_errors.TokenError, ErrorCode.TOKEN_ERROR),
]


def _otp_error(exc: otp.OtpError) -> RpcError:
    """OTP failures on the wire."""
    retry = getattr(exc, "retry_after_seconds", None)
    data = {"retryAfter": retry} if retry else {}
    if isinstance(exc, otp.OtpInvalid):
        left = {} if exc.attempts_left is None else {"attemptsLeft": exc.attempts_left}
        return RpcError(ErrorCode.INVALID_OTP, data={**data, **left})
    if isinstance(exc, otp.OtpReplayed):
        return RpcError(ErrorCode.INVALID_OTP, "this code was already used",
                        {"reason": "replayed"})
    if isinstance(exc, otp.OtpNotEnrolled):
        return RpcError(ErrorCode.INVALID_OTP, "no one-time password is enrolled",
                        {"reason": "not-enrolled"})
    if isinstance(exc, otp.OtpMethodNotAllowed):
        return RpcError(ErrorCode.OTP_METHOD_NOT_ALLOWED, str(exc))
    if isinstance(exc, otp.OtpExpired):
        return RpcError(ErrorCode.OTP_EXPIRED)
    if isinstance(exc, otp.OtpSessionUnknown):
        return RpcError(ErrorCode.INVALID_OTP, "the signature service does not know this "
                        "OTP session", {"reason": "session"})
    if isinstance(exc, otp.OtpHashesMismatch):
        return RpcError(ErrorCode.INVALID_OTP, "this code was sent for other documents",
                        {"reason": "hashes"})
    if isinstance(exc, otp.OtpServiceUnavailable):
        return RpcError(ErrorCode.OTP_UNAVAILABLE)  # the detail is in the log only
    return RpcError(ErrorCode.OTP_THROTTLED, data=data)


def error_for(exc: BaseException, *, log_unexpected: bool = True) -> RpcError:
    """The one place domain errors become wire errors."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, otp.OtpError):
        return _otp_error(exc)
    if isinstance(exc, errors.SigningRequestInvalid | PdfRefused):
        return RpcError(ErrorCode.BAD_REQUEST, str(exc))
    if isinstance(exc, errors.SadRefused):
        if exc.reason is not None:
            return RpcError(ErrorCode.SAD_INVALID, data={"reason": exc.reason})
        return RpcError(ErrorCode.SAD_INVALID, str(exc))
    if isinstance(exc, EnrolmentUnknown):
        return RpcError(ErrorCode.ENROLMENT_UNKNOWN)
    if isinstance(exc, EnrolmentFailed):
        code = (ErrorCode.CA_UNAVAILABLE if exc.code in ("ca_unreachable", "ca_not_configured")
                else ErrorCode.ENROLMENT_REFUSED)
        return RpcError(code, str(exc), data={"reason": exc.code})
    if isinstance(exc, errors.SecondFactorRequired):
        return RpcError(ErrorCode.SECOND_FACTOR_REQUIRED, data={"tokenID": exc.token_id})
    if isinstance(exc, errors.TokenCallsThrottled):
        return RpcError(ErrorCode.RATE_LIMITED, data={"retryAfter": exc.retry_after_seconds})
    if isinstance(exc, confirmations.ConfirmationRequired):
        return RpcError(ErrorCode.CONFIRMATION_REQUIRED, data={
            "code": exc.code, "action": exc.action, "subject": exc.subject,
            "approve": f"qsign agent approve {exc.code}"})
    if isinstance(exc, confirmations.ConfirmationsBusy):
        return RpcError(ErrorCode.RATE_LIMITED, str(exc))
    for kind, code in _TOKEN_ERRORS:
        if isinstance(exc, kind):
            data: dict[str, Any] = {}
            attempts = getattr(exc, "attempts_left", None)
            if attempts is not None:
                data["attemptsLeft"] = attempts
            if isinstance(exc, token_errors.InvalidPuk):
                data["reference"] = "PUK"
            return RpcError(code, code.default_message, data)
    if log_unexpected:
        log.error("unexpected error", exc_info=exc)
    return RpcError(ErrorCode.INTERNAL)
