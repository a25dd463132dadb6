"""CKR codes to domain errors, in one place (PKCS#11 v2.40 §5.1).

python-pkcs11 raises one exception class per CKR code (`pkcs11.exceptions`); the calls
made through ctypes (`cryptoki.py`) raise the very same classes (`exception_for_rv`),
so `error_for_pkcs11` is the one mapping for both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pkcs11 import exceptions as p11e
from pkcs11.constants import TokenFlag

from agent.tokens.errors import (
    CommunicationError,
    InvalidInput,
    InvalidPin,
    KeyNotFound,
    NotAuthenticated,
    OperationFailed,
    PinBlocked,
    PinFormatInvalid,
    TokenError,
    TokenRemoved,
    UnsupportedMechanism,
)

T = TypeVar("T")

CKR_OK = 0x000
CKR_CANT_LOCK = 0x00A
CKR_KEY_FUNCTION_NOT_PERMITTED = 0x068
CKR_BUFFER_TOO_SMALL = 0x150
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_ACTION_PROHIBITED = 0x01B
CKR_ATTRIBUTE_SENSITIVE = 0x011
CKR_ATTRIBUTE_TYPE_INVALID = 0x012

# The exception python-pkcs11 raises for each CKR code (its `map_rv_to_error`, which
# Python cannot call); used for the calls made through ctypes so that every failure,
# whichever way it was called, reaches `error_for_pkcs11` in the same shape.
RV_EXCEPTIONS: dict[int, type[p11e.PKCS11Error]] = {
    0x002: p11e.HostMemory,
    0x003: p11e.SlotIDInvalid,
    0x005: p11e.GeneralError,
    0x006: p11e.FunctionFailed,
    0x007: p11e.ArgumentsBad,
    0x008: p11e.NoEvent,
    0x010: p11e.AttributeReadOnly,
    0x011: p11e.AttributeSensitive,
    0x012: p11e.AttributeTypeInvalid,
    0x013: p11e.AttributeValueInvalid,
    0x020: p11e.DataInvalid,
    0x021: p11e.DataLenRange,
    0x030: p11e.DeviceError,
    0x031: p11e.DeviceMemory,
    0x032: p11e.DeviceRemoved,
    0x050: p11e.FunctionCancelled,
    0x054: p11e.FunctionNotSupported,
    0x060: p11e.KeyHandleInvalid,
    0x062: p11e.KeySizeRange,
    0x063: p11e.KeyTypeInconsistent,
    0x070: p11e.MechanismInvalid,
    0x071: p11e.MechanismParamInvalid,
    0x082: p11e.ObjectHandleInvalid,
    0x090: p11e.OperationActive,
    0x091: p11e.OperationNotInitialized,
    0x0A0: p11e.PinIncorrect,
    0x0A1: p11e.PinInvalid,
    0x0A2: p11e.PinLenRange,
    0x0A3: p11e.PinExpired,
    0x0A4: p11e.PinLocked,
    0x0B0: p11e.SessionClosed,
    0x0B1: p11e.SessionCount,
    0x0B3: p11e.SessionHandleInvalid,
    0x0B5: p11e.SessionReadOnly,
    0x0B6: p11e.SessionExists,
    0x0B7: p11e.SessionReadOnlyExists,
    0x0B8: p11e.SessionReadWriteSOExists,
    0x0C0: p11e.SignatureInvalid,
    0x0C1: p11e.SignatureLenRange,
    0x0D0: p11e.TemplateIncomplete,
    0x0D1: p11e.TemplateInconsistent,
    0x0E0: p11e.TokenNotPresent,
    0x0E1: p11e.TokenNotRecognised,
    0x0E2: p11e.TokenWriteProtected,
    0x100: p11e.UserAlreadyLoggedIn,
    0x101: p11e.UserNotLoggedIn,
    0x102: p11e.UserPinNotInitialized,
    0x104: p11e.AnotherUserAlreadyLoggedIn,
    0x105: p11e.UserTooManyTypes,
    0x130: p11e.DomainParamsInvalid,
    0x1B8: p11e.PinTooWeak,
}

# python-pkcs11 words codes it has no class for like this; `exception_for_rv` copies it.
_UNMAPPED = re.compile(r"Unmapped error code (0x[0-9a-fA-F]+)")


def exception_for_rv(rv: int, call: str) -> p11e.PKCS11Error:
    """The python-pkcs11 exception for a CKR code returned to a ctypes call."""
    cls = RV_EXCEPTIONS.get(rv)
    if cls is not None:
        return cls(f"{call}: CKR 0x{rv:08X}")
    return p11e.PKCS11Error(f"Unmapped error code {hex(rv)} ({call})")


def attempts_left_from_flags(flags: int) -> int | None:
    """PIN tries left as far as CK_TOKEN_INFO.flags tell (PKCS#11 v2.40 §3.2, CK_TOKEN_INFO):
    locked 0, final try 1, otherwise unknown (COUNT_LOW says only "fewer than all")."""
    if flags & TokenFlag.USER_PIN_LOCKED:
        return 0
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return 1
    return None


@dataclass(frozen=True, slots=True)
class _Failure:
    """What a mapping rule may use besides the exception itself."""

    exc: p11e.PKCS11Error
    what: str
    token_flags: int | None

    @property
    def text(self) -> str:
        name = type(self.exc).__name__
        return f"{self.what}: {name}" if self.what else name


_Rule = Callable[[_Failure], TokenError]


def _removed(f: _Failure) -> TokenError:
    return TokenRemoved(f"{f.text}: the token left its slot")


def _communication(f: _Failure) -> TokenError:
    return CommunicationError(f"{f.text}: the PKCS#11 module or device failed")


def _unsupported(f: _Failure) -> TokenError:
    return UnsupportedMechanism(f"{f.text}: the token cannot do this with this key")


def _not_authenticated(f: _Failure) -> TokenError:
    return NotAuthenticated(f"{f.text}: the PIN must be verified first")


def _failed(f: _Failure) -> TokenError:
    return OperationFailed(f"{f.text}: the token refused the operation")


def _invalid_pin(f: _Failure) -> TokenError:
    flags = f.token_flags
    return InvalidPin(None if flags is None else attempts_left_from_flags(flags))


# The one table: each python-pkcs11 exception class (one per CKR code) to a domain error.
# Looked up along the exception's MRO, so subclasses inherit their parent's rule.
PKCS11_ERROR_RULES: dict[type[p11e.PKCS11Error], _Rule] = {
    # PIN and login state
    p11e.PinIncorrect: _invalid_pin,
    p11e.PinLocked: lambda f: PinBlocked(),
    p11e.PinInvalid: lambda f: PinFormatInvalid(f"{f.text}: the token refused the PIN's form"),
    p11e.PinLenRange: lambda f: PinFormatInvalid(f"{f.text}: the PIN is too short or too long"),
    p11e.PinTooWeak: lambda f: PinFormatInvalid(f"{f.text}: the token finds the PIN too weak"),
    p11e.PinExpired: lambda f: NotAuthenticated(f"{f.text}: the PIN has expired; change it"),
    p11e.UserNotLoggedIn: _not_authenticated,
    p11e.UserPinNotInitialized: lambda f: NotAuthenticated(
        f"{f.text}: the token has no user PIN yet"),
    p11e.FunctionCancelled: lambda f: NotAuthenticated(f"{f.text}: PIN entry was cancelled"),
    p11e.UserAlreadyLoggedIn: _failed,
    p11e.AnotherUserAlreadyLoggedIn: lambda f: OperationFailed(
        f"{f.text}: the security officer is logged in to this token"),
    p11e.UserTooManyTypes: _failed,
    # the token went away
    p11e.TokenNotPresent: _removed,
    p11e.DeviceRemoved: _removed,
    p11e.SlotIDInvalid: _removed,
    p11e.TokenNotRecognised: _removed,
    p11e.NoSuchToken: _removed,
    # the module, reader or device failed
    p11e.DeviceError: _communication,
    p11e.GeneralError: _communication,
    p11e.HostMemory: _communication,
    p11e.SessionHandleInvalid: _communication,  # only after the one reopen failed too
    p11e.SessionClosed: _communication,
    p11e.SessionCount: _communication,
    # mechanism, key and algorithm
    p11e.MechanismInvalid: _unsupported,
    p11e.MechanismParamInvalid: _unsupported,
    p11e.KeyTypeInconsistent: _unsupported,
    p11e.KeySizeRange: _unsupported,
    p11e.FunctionNotSupported: _unsupported,
    p11e.DomainParamsInvalid: _unsupported,
    p11e.KeyHandleInvalid: lambda f: KeyNotFound(f.what or "key"),
    p11e.ObjectHandleInvalid: lambda f: KeyNotFound(f.what or "object"),
    p11e.NoSuchKey: lambda f: KeyNotFound(f.what or "key"),
    # the caller's data
    p11e.DataLenRange: lambda f: InvalidInput(f"{f.text}: the data has the wrong length"),
    p11e.DataInvalid: lambda f: InvalidInput(f"{f.text}: the token refused the data"),
    # the token refused for its own reasons
    p11e.DeviceMemory: lambda f: OperationFailed(f"{f.text}: the token is out of memory"),
    p11e.TokenWriteProtected: lambda f: OperationFailed(f"{f.text}: the token is read-only"),
    p11e.SessionReadOnly: lambda f: OperationFailed(f"{f.text}: the token is read-only"),
    p11e.TemplateIncomplete: _failed,
    p11e.TemplateInconsistent: _failed,
    p11e.AttributeValueInvalid: _failed,
    p11e.AttributeTypeInvalid: _failed,
    p11e.AttributeReadOnly: _failed,
    p11e.AttributeSensitive: _failed,
    p11e.FunctionFailed: _failed,
    p11e.OperationActive: _failed,
    p11e.ArgumentsBad: _failed,
}

# Codes python-pkcs11 has no class for ("Unmapped error code 0x..").
PKCS11_CODE_RULES: dict[int, _Rule] = {
    CKR_KEY_FUNCTION_NOT_PERMITTED: _unsupported,
    CKR_ACTION_PROHIBITED: _unsupported,
    CKR_CRYPTOKI_NOT_INITIALIZED: _communication,
}


def error_for_pkcs11(exc: p11e.PKCS11Error, *, what: str = "",
                     token_flags: int | None = None) -> TokenError:
    """The one mapping from PKCS#11 return values (PKCS#11 v2.40 §5.1) to domain errors.

    `what` names the operation or object for the message; `token_flags` (CK_TOKEN_INFO
    flags read after a failed login) give `InvalidPin` its attempts left.
    """
    failure = _Failure(exc, what, token_flags)
    for cls in type(exc).__mro__:
        rule = PKCS11_ERROR_RULES.get(cls)
        if rule is not None:
            return rule(failure)
    match = _UNMAPPED.search(str(exc))
    code = int(match.group(1), 16) if match else None
    if code is not None and code in PKCS11_CODE_RULES:
        return PKCS11_CODE_RULES[code](failure)
    detail = f"{what}: {exc}" if what else str(exc) or type(exc).__name__
    return OperationFailed(detail, code)


# Errors after which the session is gone but the token may well be there: reopen once.
SESSION_LOST = (p11e.SessionHandleInvalid, p11e.SessionClosed)
# A refused PIN: the token flags then tell the tries left.
PIN_FAILURES = (p11e.PinIncorrect, p11e.PinLocked)


def mapped_call(what: str, fn: Callable[[], T]) -> T:
    """A module call outside any session, its errors mapped."""
    try:
        return fn()
    except p11e.PKCS11Error as exc:
        raise error_for_pkcs11(exc, what=what) from exc
