"""The PKCS#11 backend: a `Token` over any Cryptoki module, through python-pkcs11.

Modules are loaded once per process (`Pkcs11Module`, cached by real path) and
each `Pkcs11Token` holds one session of its own, used only from the token's
worker thread. CKR codes become domain errors in one place, `error_for_pkcs11`.

python-pkcs11 0.10 does most of the work. For the few calls where it cannot do
what the security model needs, this module calls the same module's
CK_FUNCTION_LIST directly through ctypes (`_Cryptoki`), on the sessions that
python-pkcs11 opened:

* `C_Initialize`: `pkcs11.lib()` calls `C_Initialize(NULL)` (see `lib.initialize`
  in `_pkcs11.pyx`), which by PKCS#11 v2.40 §5.4 promises the module that no two
  threads ever call it at once. The registry runs one worker thread per token,
  so two tokens of one module are called concurrently: right after python-pkcs11
  loads a module (before any session exists) it is finalised and initialised
  again with `CKF_OS_LOCKING_OK`. A module that answers CKR_CANT_LOCK is
  initialised without it and `Pkcs11Module.os_locking` says so.
* `C_Login` / `C_Logout`: python-pkcs11 logs in only while opening a session;
  the token logs in and out on the session it holds, with a NULL PIN for a
  protected authentication path (PIN pad), and wipes its copy of the PIN.
* `C_SignInit` + `C_Login(CKU_CONTEXT_SPECIFIC)` + `C_Sign` for keys with
  CKA_ALWAYS_AUTHENTICATE: python-pkcs11's `sign(pin=...)` cannot pass the NULL
  PIN a PIN pad needs, so such keys are signed here for PINs and PIN pads alike.
* `C_SetPIN`, `C_GetSessionInfo`, `C_CloseAllSessions`.

Traces of PKCS#11 calls go to the TRAFFIC level (below DEBUG); a PIN appears in
them only as its length.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pkcs11
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import exceptions as p11e
from pkcs11.constants import (
    Attribute,
    CertificateType,
    MechanismFlag,
    ObjectClass,
    SlotFlag,
    TokenFlag,
    UserType,
)
from pkcs11.mechanisms import MGF, Mechanism
from pkcs11.mechanisms import KeyType as P11KeyType
from pkcs11.types import Object, Session, SignMixin
from pkcs11.util.ec import encode_named_curve_parameters

from agent.tokens.errors import (
    CommunicationError,
    InvalidInput,
    InvalidPin,
    KeyNotFound,
    NotAuthenticated,
    OperationFailed,
    PinBlocked,
    PinFormatInvalid,
    ProtectedAuthenticationPath,
    TokenError,
    TokenRemoved,
    UnsupportedMechanism,
)
from agent.tokens.model import (
    Credential,
    HashAlgorithm,
    KeyType,
    Padding,
    PinStatus,
    Route,
    RouteInfo,
    SignatureAlgorithm,
    Token,
    TokenInfo,
)
from qsign.traffic import TRAFFIC

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as _python_pkcs11_lib

log = logging.getLogger(__name__)

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# CKR codes and the one mapping to domain errors
# --------------------------------------------------------------------------------------------

CKR_OK = 0x000
CKR_CANT_LOCK = 0x00A
CKR_KEY_FUNCTION_NOT_PERMITTED = 0x068
CKR_BUFFER_TOO_SMALL = 0x150
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_ACTION_PROHIBITED = 0x01B

# The exception python-pkcs11 raises for each CKR code (its `map_rv_to_error`, which
# Python cannot call); used for the calls made through ctypes so that every failure,
# whichever way it was called, reaches `error_for_pkcs11` in the same shape.
_RV_EXCEPTIONS: dict[int, type[p11e.PKCS11Error]] = {
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

# python-pkcs11 words codes it has no class for like this; `_exception_for_rv` copies it.
_UNMAPPED = re.compile(r"Unmapped error code (0x[0-9a-fA-F]+)")


def _exception_for_rv(rv: int, call: str) -> p11e.PKCS11Error:
    """The python-pkcs11 exception for a CKR code returned to a ctypes call."""
    cls = _RV_EXCEPTIONS.get(rv)
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


# --------------------------------------------------------------------------------------------
# The module's function list, for the calls python-pkcs11 does not make the way we need
# --------------------------------------------------------------------------------------------

_CK_ULONG = ctypes.c_ulong  # CK_ULONG is `unsigned long` (Linux, macOS; not Windows' packing)
_BYTES = ctypes.POINTER(ctypes.c_ubyte)

_MAX_SIGNATURE = 4096
CKF_OS_LOCKING_OK = 0x2
CKU_USER = int(UserType.USER)
CKU_CONTEXT_SPECIFIC = 2
CKS_RO_USER_FUNCTIONS = 1
CKS_RW_USER_FUNCTIONS = 3

# CK_FUNCTION_LIST up to C_Sign, in the order of pkcs11f.h (v2.40); the rest is unused.
_FUNCTIONS = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
    "C_InitToken", "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession",
    "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState",
    "C_Login", "C_Logout", "C_CreateObject", "C_CopyObject", "C_DestroyObject",
    "C_GetObjectSize", "C_GetAttributeValue", "C_SetAttributeValue", "C_FindObjectsInit",
    "C_FindObjects", "C_FindObjectsFinal", "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate",
    "C_EncryptFinal", "C_DecryptInit", "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal",
    "C_DigestInit", "C_Digest", "C_DigestUpdate", "C_DigestKey", "C_DigestFinal",
    "C_SignInit", "C_Sign",
)


class _CkVersion(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _CkFunctionList(ctypes.Structure):
    _fields_ = (("version", _CkVersion), *((name, ctypes.c_void_p) for name in _FUNCTIONS))


class _CkInitializeArgs(ctypes.Structure):
    _fields_ = (
        ("CreateMutex", ctypes.c_void_p), ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p), ("UnlockMutex", ctypes.c_void_p),
        ("flags", _CK_ULONG), ("pReserved", ctypes.c_void_p),
    )


class _CkSessionInfo(ctypes.Structure):
    _fields_ = (("slotID", _CK_ULONG), ("state", _CK_ULONG), ("flags", _CK_ULONG),
                ("ulDeviceError", _CK_ULONG))


class _CkRsaPkcsPssParams(ctypes.Structure):
    _fields_ = (("hashAlg", _CK_ULONG), ("mgf", _CK_ULONG), ("sLen", _CK_ULONG))


class _CkMechanism(ctypes.Structure):
    _fields_ = (("mechanism", _CK_ULONG), ("pParameter", ctypes.c_void_p),
                ("ulParameterLen", _CK_ULONG))


_RV = _CK_ULONG
_PROTOTYPES: dict[str, Any] = {
    "C_Initialize": ctypes.CFUNCTYPE(_RV, ctypes.c_void_p),
    "C_Finalize": ctypes.CFUNCTYPE(_RV, ctypes.c_void_p),
    "C_SetPIN": ctypes.CFUNCTYPE(_RV, _CK_ULONG, _BYTES, _CK_ULONG, _BYTES, _CK_ULONG),
    "C_CloseAllSessions": ctypes.CFUNCTYPE(_RV, _CK_ULONG),
    "C_GetSessionInfo": ctypes.CFUNCTYPE(_RV, _CK_ULONG, ctypes.POINTER(_CkSessionInfo)),
    "C_Login": ctypes.CFUNCTYPE(_RV, _CK_ULONG, _CK_ULONG, _BYTES, _CK_ULONG),
    "C_Logout": ctypes.CFUNCTYPE(_RV, _CK_ULONG),
    "C_SignInit": ctypes.CFUNCTYPE(_RV, _CK_ULONG, ctypes.POINTER(_CkMechanism), _CK_ULONG),
    # char* for data in and signature out: bytes and string buffers pass without copies.
    "C_Sign": ctypes.CFUNCTYPE(_RV, _CK_ULONG, ctypes.c_char_p, _CK_ULONG, ctypes.c_char_p,
                               ctypes.POINTER(_CK_ULONG)),
}


class _Secret:
    """A PIN in a C buffer that `wipe` zeroes; `_Secret(None)` is the PIN pad (a NULL PIN).
    Its text form, the one traces show, is its length."""

    def __init__(self, pin: str | None) -> None:
        self._data = None if pin is None else bytearray(pin.encode("utf-8"))
        self._buffer: Any = None
        if self._data:
            self._buffer = (ctypes.c_ubyte * len(self._data)).from_buffer(self._data)

    @property
    def length(self) -> int:
        return 0 if self._data is None else len(self._data)

    @property
    def pointer(self) -> Any:
        if self._data is None:
            return None
        if self._buffer is None:
            raise RuntimeError("the PIN was already wiped")
        return ctypes.cast(self._buffer, _BYTES)

    def __str__(self) -> str:
        return "<PIN pad>" if self._data is None else f"<{self.length} bytes>"

    __repr__ = __str__

    def wipe(self) -> None:
        if self._buffer is not None:
            ctypes.memset(ctypes.addressof(self._buffer), 0, ctypes.sizeof(self._buffer))
            self._buffer = None


@contextmanager
def _wiped(*secrets: _Secret | None) -> Iterator[None]:
    try:
        yield
    finally:
        for secret in secrets:
            if secret is not None:
                secret.wipe()


@dataclass(frozen=True, slots=True)
class _SessionInfo:
    slot_id: int
    state: int

    @property
    def user_logged_in(self) -> bool:
        return self.state in (CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS)


class _Cryptoki:
    """A ctypes view of one module's CK_FUNCTION_LIST (the same table python-pkcs11 uses:
    dlopen of one file answers the same handle)."""

    def __init__(self, path: str) -> None:
        self._dll = ctypes.CDLL(path)
        get_list = self._dll.C_GetFunctionList
        get_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_CkFunctionList))]
        get_list.restype = _RV
        table = ctypes.POINTER(_CkFunctionList)()
        self._check(get_list(ctypes.byref(table)), "C_GetFunctionList")
        self._table = table.contents
        self._functions: dict[str, Any] = {}
        # Bumped whenever this process ends sessions of the module: only then can a
        # token's handle have been closed and handed to another session (see
        # Pkcs11Token._current_session), so only then is C_GetSessionInfo worth a call.
        self.session_epoch = 0

    def sessions_ended(self) -> None:
        self.session_epoch += 1

    def _fn(self, name: str) -> Any:
        fn = self._functions.get(name)
        if fn is None:
            address = getattr(self._table, name)
            if not address:
                raise p11e.FunctionNotSupported(f"{name} is missing from the module")
            fn = self._functions[name] = _PROTOTYPES[name](address)
        return fn

    @staticmethod
    def _check(rv: int, call: str) -> None:
        if rv != CKR_OK:
            raise _exception_for_rv(rv, call)

    def initialize(self, os_locking: bool) -> bool:
        """C_Initialize (PKCS#11 v2.40 §5.4); answers whether OS locking is on."""
        if os_locking:
            args = _CkInitializeArgs(flags=CKF_OS_LOCKING_OK)
            rv = self._fn("C_Initialize")(ctypes.byref(args))
            log.log(TRAFFIC, "C_Initialize(CKF_OS_LOCKING_OK) -> 0x%X", rv)
            if rv != CKR_CANT_LOCK:
                self._check(rv, "C_Initialize")
                return True
        rv = self._fn("C_Initialize")(None)
        log.log(TRAFFIC, "C_Initialize(NULL) -> 0x%X", rv)
        self._check(rv, "C_Initialize")
        return False

    def finalize(self) -> None:
        self.sessions_ended()
        rv = self._fn("C_Finalize")(None)
        log.log(TRAFFIC, "C_Finalize -> 0x%X", rv)
        if rv != CKR_CRYPTOKI_NOT_INITIALIZED:
            self._check(rv, "C_Finalize")

    def session_info(self, session: int) -> _SessionInfo:
        info = _CkSessionInfo()
        self._check(self._fn("C_GetSessionInfo")(session, ctypes.byref(info)),
                    "C_GetSessionInfo")
        return _SessionInfo(int(info.slotID), int(info.state))

    def close_all_sessions(self, slot_id: int) -> None:
        self.sessions_ended()
        rv = self._fn("C_CloseAllSessions")(slot_id)
        log.log(TRAFFIC, "C_CloseAllSessions(slot=%d) -> 0x%X", slot_id, rv)
        self._check(rv, "C_CloseAllSessions")

    def login(self, session: int, user_type: int, pin: _Secret) -> None:
        rv = self._fn("C_Login")(session, user_type, pin.pointer, pin.length)
        log.log(TRAFFIC, "C_Login(session=%d, user=%d, secret masked, %d bytes) -> 0x%X",
                session, user_type, pin.length, rv)
        self._check(rv, "C_Login")

    def logout(self, session: int) -> None:
        rv = self._fn("C_Logout")(session)
        log.log(TRAFFIC, "C_Logout(session=%d) -> 0x%X", session, rv)
        self._check(rv, "C_Logout")

    def set_pin(self, session: int, old: _Secret, new: _Secret) -> None:
        rv = self._fn("C_SetPIN")(session, old.pointer, old.length, new.pointer, new.length)
        log.log(TRAFFIC, "C_SetPIN(session=%d, old=%s, new=%s) -> 0x%X", session, old, new, rv)
        self._check(rv, "C_SetPIN")

    def sign(self, session: int, key: int, mechanism: int, parameter: bytes | None,
             data: bytes, context_pin: _Secret | None = None) -> bytes:
        """C_SignInit, then for a key with CKA_ALWAYS_AUTHENTICATE C_Login(CKU_CONTEXT_SPECIFIC)
        with `context_pin`, then C_Sign (PKCS#11 v2.40 §4.9, §5.12). Straight through ctypes:
        python-pkcs11's `sign` reads the key type from the token on every call."""
        param = None if parameter is None else ctypes.create_string_buffer(parameter,
                                                                           len(parameter))
        mech = _CkMechanism(mechanism, ctypes.cast(param, ctypes.c_void_p) if param else None,
                            0 if parameter is None else len(parameter))
        rv = self._fn("C_SignInit")(session, ctypes.byref(mech), key)
        if log.isEnabledFor(TRAFFIC):
            log.log(TRAFFIC, "C_SignInit(session=%d, mechanism=0x%X, key=%d) -> 0x%X",
                    session, mechanism, key, rv)
        self._check(rv, "C_SignInit")
        if context_pin is not None:
            self.login(session, CKU_CONTEXT_SPECIFIC, context_pin)
        size = _CK_ULONG(512)  # an RSA-4096 signature; a module wanting more says so once
        for _ in range(2):
            out = ctypes.create_string_buffer(size.value)
            rv = self._fn("C_Sign")(session, data, len(data), out, ctypes.byref(size))
            if log.isEnabledFor(TRAFFIC):
                log.log(TRAFFIC, "C_Sign(session=%d, data=%d bytes) -> 0x%X, %d bytes",
                        session, len(data), rv, size.value)
            if rv != CKR_BUFFER_TOO_SMALL or size.value > _MAX_SIGNATURE:
                self._check(rv, "C_Sign")
                return out.raw[:min(size.value, len(out))]
        raise p11e.GeneralError("C_Sign: the module keeps asking for a larger buffer")


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------

_OPENSC = "opensc-pkcs11.so"
_DEFAULT_CANDIDATES = (
    f"/usr/lib/x86_64-linux-gnu/pkcs11/{_OPENSC}",
    f"/usr/lib/*/pkcs11/{_OPENSC}",
    f"/usr/lib/pkcs11/{_OPENSC}",
    f"/usr/lib64/pkcs11/{_OPENSC}",
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/*/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
)


def default_module_paths() -> list[str]:
    """The installed modules of OpenSC and SoftHSM2, OpenSC first, one path per file."""
    found: list[str] = []
    seen: set[str] = set()
    for pattern in _DEFAULT_CANDIDATES:
        for path in sorted(glob.glob(pattern)):
            real = os.path.realpath(path)
            if os.path.isfile(real) and real not in seen:
                seen.add(real)
                found.append(path)
    return found


class _Library:
    """One loaded module: the python-pkcs11 `lib` and the ctypes view of its functions."""

    def __init__(self, path: str, real: str) -> None:
        self.real = real
        shared = _python_pkcs11_lib_for(real)
        try:
            self.lib = shared if shared is not None else pkcs11.lib(path)
        except p11e.PKCS11Error as exc:
            raise CommunicationError(f"cannot load the PKCS#11 module {path}: {exc}") from exc
        self.generation = 0
        self.os_locking = False  # initialised by someone else, with arguments we can't see
        try:
            self.cryptoki = _Cryptoki(real)
            if shared is None:
                # No session exists yet: python-pkcs11 said NULL (one thread); say OS locking.
                self.cryptoki.finalize()
                self.os_locking = self.cryptoki.initialize(os_locking=True)
        except (OSError, p11e.PKCS11Error) as exc:
            raise CommunicationError(f"cannot initialise the PKCS#11 module {path}: {exc}"
                                     ) from exc
        _alias_python_pkcs11_lib(self.lib, path, real)
        log.debug("loaded PKCS#11 module %s (%s, OS locking %s)", real,
                  self.lib.library_description, self.os_locking)

    def reinitialize(self) -> None:
        """C_Finalize and C_Initialize again: every session of the module ends."""
        self.cryptoki.finalize()
        self.os_locking = self.cryptoki.initialize(os_locking=True)
        self.generation += 1


def _python_pkcs11_lib_for(real: str) -> Any:
    """A python-pkcs11 `lib` already loaded for this file under any name: a second
    `pkcs11.lib()` of the same file would fail with CKR_CRYPTOKI_ALREADY_INITIALIZED."""
    loaded = getattr(pkcs11, "_loaded", None)
    if isinstance(loaded, dict):
        for name, lib in loaded.items():
            if os.path.realpath(name) == real and getattr(lib, "initialized", False):
                return lib
    return None


def _alias_python_pkcs11_lib(lib: Any, *names: str) -> None:
    loaded = getattr(pkcs11, "_loaded", None)
    if isinstance(loaded, dict):
        for name in names:
            loaded.setdefault(name, lib)


_LIBRARIES: dict[str, _Library] = {}
_LIBRARIES_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Pkcs11Slot:
    """A slot with a token present (CK_SLOT_INFO + CK_TOKEN_INFO)."""

    slot_id: int
    serial: str
    label: str
    manufacturer: str
    model: str
    flags: int  # CK_TOKEN_INFO.flags (pkcs11.TokenFlag)
    description: str  # CK_SLOT_INFO.slotDescription: the PC/SC reader name for OpenSC
    slot_flags: int  # CK_SLOT_INFO.flags (pkcs11.SlotFlag)

    @property
    def initialized(self) -> bool:
        return bool(self.flags & TokenFlag.TOKEN_INITIALIZED)

    @property
    def protected_authentication_path(self) -> bool:
        return bool(self.flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH)

    @property
    def reader(self) -> str | None:
        """The reader's name, when the slot is a reader (hardware or removable device)."""
        return _reader_name(self.description, self.slot_flags)


class Pkcs11Module:
    """A PKCS#11 module. The file is loaded and C_Initialize'd once per process however
    many `Pkcs11Module` objects name it (PKCS#11 v2.40 §5.4, §6.6.2), on first use: a
    module that is missing or fails to load raises CommunicationError from the call that
    needed it (`slots()`, ...), so one bad entry in a list of modules stops nothing else."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.realpath = os.path.realpath(self.path)

    @property
    def _library(self) -> _Library:
        library = _LIBRARIES.get(self.realpath)
        if library is not None:
            return library
        with _LIBRARIES_LOCK:
            library = _LIBRARIES.get(self.realpath)
            if library is None:
                if not os.path.isfile(self.realpath):
                    raise CommunicationError(f"no PKCS#11 module at {self.path}")
                library = _LIBRARIES[self.realpath] = _Library(self.path, self.realpath)
            return library

    def load(self) -> Pkcs11Module:
        """Load and initialise the module now (it is otherwise done on first use)."""
        _ = self._library
        return self

    @property
    def name(self) -> str:
        """A short name for ids: the file name without '.so'."""
        base = os.path.basename(self.realpath)
        return base[:-3] if base.endswith(".so") else base

    @property
    def lib(self) -> _python_pkcs11_lib:
        """The python-pkcs11 `lib` (for tools and benchmarks on the same loaded module)."""
        return self._library.lib

    @property
    def os_locking(self) -> bool:
        """Whether the module runs with CKF_OS_LOCKING_OK (callers on several threads)."""
        return self._library.os_locking

    @property
    def generation(self) -> int:
        return self._library.generation

    @property
    def _cryptoki(self) -> _Cryptoki:
        return self._library.cryptoki

    def reinitialize(self) -> None:
        """C_Finalize + C_Initialize: for tests (SoftHSM2 reads SOFTHSM2_CONF then) and
        recovery. Every session of every token of this module ends; tokens reopen theirs."""
        try:
            self._library.reinitialize()
        except p11e.PKCS11Error as exc:
            raise error_for_pkcs11(exc, what="C_Initialize") from exc

    def slots(self, *, include_uninitialized: bool = False) -> list[Pkcs11Slot]:
        """The slots with a token present (C_GetSlotList(TRUE), C_GetTokenInfo)."""
        try:
            raw_slots = self.lib.get_slots(token_present=True)
        except p11e.PKCS11Error as exc:
            raise error_for_pkcs11(exc, what="C_GetSlotList") from exc
        found = []
        for slot in raw_slots:
            try:
                token = slot.get_token()
            except (p11e.TokenNotPresent, p11e.TokenNotRecognised, p11e.DeviceRemoved,
                    p11e.SlotIDInvalid):
                continue  # left between the two calls, or a card no module driver knows
            except p11e.PKCS11Error as exc:
                raise error_for_pkcs11(exc, what="C_GetTokenInfo") from exc
            entry = Pkcs11Slot(
                slot_id=int(slot.slot_id), serial=_serial_text(token.serial),
                label=token.label, manufacturer=token.manufacturer_id, model=token.model,
                flags=int(token.flags), description=slot.slot_description.strip(),
                slot_flags=int(slot.flags))
            log.log(TRAFFIC, "slot %d: %r serial %s flags 0x%X", entry.slot_id, entry.label,
                    entry.serial, entry.flags)
            if entry.initialized or include_uninitialized:
                found.append(entry)
        return found

    def present_slots(self) -> list[Pkcs11Slot]:
        """`slots()`, for the registry's `Pkcs11Source`."""
        return self.slots()

    def open_token(self, slot_id: int) -> Pkcs11Token:
        """The token in `slot_id` (raises TokenRemoved when there is none)."""
        return Pkcs11Token(self, slot_id)

    def close_all_sessions(self, slot_id: int) -> None:
        """C_CloseAllSessions: ends every session this process has on the slot (and with
        them the login); tokens reopen theirs on next use."""
        try:
            self._cryptoki.close_all_sessions(slot_id)
        except p11e.PKCS11Error as exc:
            raise error_for_pkcs11(exc, what="C_CloseAllSessions") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pkcs11Module) and other.realpath == self.realpath

    def __hash__(self) -> int:
        return hash(self.realpath)

    def __repr__(self) -> str:
        return f"Pkcs11Module({self.path!r})"


def _reader_name(description: str, slot_flags: int) -> str | None:
    """OpenSC names a slot after its PC/SC reader and flags it CKF_HW_SLOT and
    CKF_REMOVABLE_DEVICE; a soft token's slot is neither."""
    if slot_flags & (SlotFlag.HW_SLOT | SlotFlag.REMOVABLE_DEVICE) and description.strip():
        return description.strip()
    return None


def _serial_text(serial: bytes | str) -> str:
    text = serial.decode("ascii", "replace") if isinstance(serial, bytes) else serial
    return text.strip()


# --------------------------------------------------------------------------------------------
# Keys, algorithms, certificates
# --------------------------------------------------------------------------------------------

_CURVES: dict[bytes, KeyType] = {
    encode_named_curve_parameters("secp256r1"): KeyType.EC_P256,
    encode_named_curve_parameters("secp384r1"): KeyType.EC_P384,
}
_CURVE_PARAMS = {key_type: params for params, key_type in _CURVES.items()}
_CRYPTOGRAPHY_CURVES: dict[KeyType, ec.EllipticCurve] = {
    KeyType.EC_P256: ec.SECP256R1(), KeyType.EC_P384: ec.SECP384R1()}

_HASH_MECHANISMS: dict[HashAlgorithm, tuple[Mechanism, MGF]] = {
    HashAlgorithm.SHA256: (Mechanism.SHA256, MGF.SHA256),
    HashAlgorithm.SHA384: (Mechanism.SHA384, MGF.SHA384),
    HashAlgorithm.SHA512: (Mechanism.SHA512, MGF.SHA512),
}
_GENERATION_MECHANISMS = {
    KeyType.EC_P256: Mechanism.EC_KEY_PAIR_GEN,
    KeyType.EC_P384: Mechanism.EC_KEY_PAIR_GEN,
    KeyType.RSA_2048: Mechanism.RSA_PKCS_KEY_PAIR_GEN,
}
_MAX_ID_BYTES = 64


def signing_input(algorithm: SignatureAlgorithm, key_type: KeyType, digest: bytes
                  ) -> tuple[Mechanism, bytes | None, bytes]:
    """(mechanism, raw mechanism parameter, data) that sign `digest` as `algorithm`:
    CKM_ECDSA over the digest cut to the order's size (X9.62 / FIPS 186-5 §6.4.1),
    CKM_RSA_PKCS over DigestInfo || digest (RFC 8017 §9.2), CKM_RSA_PKCS_PSS with
    CK_RSA_PKCS_PSS_PARAMS (hash, MGF1 with the same hash, salt as long as the hash)."""
    if len(digest) != algorithm.hash.digest_size:
        raise InvalidInput(f"a {algorithm.hash.value} digest has {algorithm.hash.digest_size} "
                           f"bytes, not {len(digest)}")
    if not algorithm.fits(key_type):
        raise UnsupportedMechanism(f"{algorithm} does not fit a {key_type.value} key")
    if algorithm.padding is Padding.ECDSA:
        return Mechanism.ECDSA, None, digest[:key_type.size // 8]
    if algorithm.padding is Padding.PKCS1V15:
        return Mechanism.RSA_PKCS, None, algorithm.hash.digest_info_prefix + digest
    hash_mechanism, mgf = _HASH_MECHANISMS[algorithm.hash]
    params = _CkRsaPkcsPssParams(hash_mechanism, mgf, algorithm.hash.digest_size)
    return Mechanism.RSA_PKCS_PSS, bytes(params), digest


def _der_ecdsa(raw: bytes) -> bytes:
    """PKCS#11's r || s (v2.40 §2.3.1) as a DER Ecdsa-Sig-Value (X9.62, RFC 3279)."""
    if not raw or len(raw) % 2:
        raise OperationFailed("the token answered a malformed ECDSA signature")
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                int.from_bytes(raw[half:], "big"))


def _key_type_of(attrs: dict[Attribute, Any]) -> KeyType | None:
    kind = attrs.get(Attribute.KEY_TYPE)
    if kind == P11KeyType.EC and Attribute.EC_PARAMS in attrs:
        return _CURVES.get(bytes(attrs[Attribute.EC_PARAMS]))
    if kind == P11KeyType.RSA and attrs.get(Attribute.MODULUS):
        bits = int.from_bytes(attrs[Attribute.MODULUS], "big").bit_length()
        return KeyType.RSA_2048 if bits == 2048 else None
    if kind == P11KeyType.RSA and attrs.get(Attribute.MODULUS_BITS):
        return KeyType.RSA_2048 if attrs[Attribute.MODULUS_BITS] == 2048 else None
    return None


def _key_type_of_certificate(der: bytes) -> KeyType | None:
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {"secp256r1": KeyType.EC_P256, "secp384r1": KeyType.EC_P384}.get(
            public.curve.name)
    if isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048:
        return KeyType.RSA_2048
    return None


def _ec_point(value: bytes, key_type: KeyType) -> bytes:
    """CKA_EC_POINT is DER OCTET STRING (v2.40 §2.3.3); some modules give the raw point."""
    if len(value) == 1 + 2 * (key_type.size // 8):
        return value
    return bytes(asn1_core.OctetString.load(value).native)


def _spki(public: Any) -> bytes:
    return bytes(public.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def _spki_of(attrs: dict[Attribute, Any]) -> bytes | None:
    """The SubjectPublicKeyInfo of a key object's attributes, if they hold its public part
    (an EC public key's CKA_EC_POINT; an RSA key's CKA_MODULUS and CKA_PUBLIC_EXPONENT)."""
    key_type = _key_type_of(attrs)
    try:
        if key_type is not None and key_type.is_ec and attrs.get(Attribute.EC_POINT):
            return _spki(ec.EllipticCurvePublicKey.from_encoded_point(
                _CRYPTOGRAPHY_CURVES[key_type], _ec_point(attrs[Attribute.EC_POINT], key_type)))
        if (key_type is KeyType.RSA_2048 and attrs.get(Attribute.MODULUS)
                and attrs.get(Attribute.PUBLIC_EXPONENT)):
            return _spki(rsa.RSAPublicNumbers(
                int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(attrs[Attribute.MODULUS], "big")).public_key())
    except ValueError:
        log.debug("a key object's public part does not parse")
    return None


def _parse_id(credential_id: str) -> bytes:
    try:
        key_id = bytes.fromhex(credential_id)
    except ValueError:
        raise InvalidInput(f"credential id {credential_id!r} is not hex (CKA_ID)") from None
    if not 0 < len(key_id) <= _MAX_ID_BYTES:
        raise InvalidInput(f"credential id must have 1 to {_MAX_ID_BYTES} bytes")
    return key_id


def _attributes(obj: Object, keys: list[Attribute]) -> dict[Attribute, Any]:
    """The attributes of `keys` the object has and lets us read; the others are left out."""
    try:
        return dict(obj.get_attributes(keys))
    except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
        return {}


def _label(attrs: dict[Attribute, Any]) -> str:
    value = attrs.get(Attribute.LABEL)
    return value.strip() if isinstance(value, str) else ""


_KEY_ATTRIBUTES = [Attribute.ID, Attribute.LABEL, Attribute.KEY_TYPE, Attribute.EC_PARAMS,
                   Attribute.MODULUS]
_PRIVATE_ATTRIBUTES = [*_KEY_ATTRIBUTES, Attribute.PUBLIC_EXPONENT, Attribute.ALWAYS_AUTHENTICATE]
_PUBLIC_ATTRIBUTES = [*_KEY_ATTRIBUTES, Attribute.MODULUS_BITS, Attribute.PUBLIC_EXPONENT,
                      Attribute.EC_POINT]
_CERTIFICATE_ATTRIBUTES = [Attribute.ID, Attribute.LABEL, Attribute.CERTIFICATE_TYPE,
                           Attribute.VALUE, Attribute.SUBJECT, Attribute.ISSUER]


@dataclass
class _Found:
    """The objects sharing one CKA_ID."""

    private: list[dict[Attribute, Any]]
    public: list[dict[Attribute, Any]]
    certificates: list[dict[Attribute, Any]]


def _chain(certificate: dict[Attribute, Any], pool: list[dict[Attribute, Any]]
           ) -> tuple[bytes, ...]:
    """Issuers of `certificate` found among the token's certificates, nearest first."""
    chain: list[bytes] = []
    seen = {bytes(certificate[Attribute.VALUE])}
    current = certificate
    for _ in range(8):
        issuer, subject = current.get(Attribute.ISSUER), current.get(Attribute.SUBJECT)
        if issuer is None or issuer == subject:
            break
        parent = next((c for c in pool if c.get(Attribute.SUBJECT) == issuer
                       and bytes(c[Attribute.VALUE]) not in seen), None)
        if parent is None:
            break
        chain.append(bytes(parent[Attribute.VALUE]))
        seen.add(chain[-1])
        current = parent
    return tuple(chain)


# --------------------------------------------------------------------------------------------
# The token
# --------------------------------------------------------------------------------------------

# Errors after which the session is gone but the token may well be there: reopen once.
_SESSION_LOST = (p11e.SessionHandleInvalid, p11e.SessionClosed)
_PIN_FAILURES = (p11e.PinIncorrect, p11e.PinLocked)


def _handle(session: Session) -> int:
    return int(session.handle)  # type: ignore[attr-defined]  # missing from the stubs


class Pkcs11Token(Token):
    """A token in one slot of one PKCS#11 module, with one session of its own.

    Not thread-safe: the registry calls it from the token's single worker thread.
    `serial`, when given, must be the serial of the token in the slot.
    """

    def __init__(self, module: Pkcs11Module, slot_id: int, *, serial: str | None = None
                 ) -> None:
        self._module = module
        self._cryptoki = module._cryptoki
        self._slot_id = slot_id
        self._session: Session | None = None
        self._generation = module.generation
        self._mechanisms: set[Any] | None = None
        self._key_cache: dict[bytes, tuple[Object, dict[Attribute, Any], KeyType]] = {}
        self._key_cache_session: Session | None = None
        self._checked_epoch = -1
        slots = _call("C_GetSlotList", lambda: module.lib.get_slots(token_present=True))
        slot = next((s for s in slots if int(s.slot_id) == slot_id), None)
        if slot is None:
            raise TokenRemoved(f"no token in slot {slot_id} of {module.path}")
        self._slot = slot
        token = _call("C_GetTokenInfo", slot.get_token)
        self._serial = _serial_text(token.serial)
        if serial is not None and serial != self._serial:
            raise TokenRemoved(f"slot {slot_id} holds token {self._serial}, not {serial}")
        self._flags = int(token.flags)
        reader = _reader_name(slot.slot_description, int(slot.flags))
        self._info = TokenInfo(
            id=f"pkcs11:{module.name}:{self._serial or f'slot{slot_id}'}",
            label=token.label.strip(), serial=self._serial,
            manufacturer=token.manufacturer_id.strip(), model=token.model.strip(),
            reader=reader,
            routes=(RouteInfo(kind=Route.PKCS11, reader=reader, module=module.path,
                              slot=slot_id),),
            protected_authentication_path=self._protected)

    # -- Token -----------------------------------------------------------------------------

    @property
    def info(self) -> TokenInfo:
        return self._info

    @property
    def module(self) -> Pkcs11Module:
        return self._module

    @property
    def slot_id(self) -> int:
        return self._slot_id

    def credentials(self) -> list[Credential]:
        """Private keys by CKA_ID, with the certificate of the same CKA_ID. Before login a
        token may hide its private keys (CKA_PRIVATE): their public keys stand in."""
        return self._run("list credentials", self._credentials)

    def pin_status(self) -> PinStatus:
        """From CK_TOKEN_INFO.flags: PKCS#11 tells only 'low', 'final try' and 'locked'."""
        flags = self._token_flags()
        return PinStatus(
            retries_left=attempts_left_from_flags(flags),
            blocked=bool(flags & TokenFlag.USER_PIN_LOCKED),
            is_default=True if flags & TokenFlag.USER_PIN_TO_BE_CHANGED else None)

    def verify_pin(self, pin: str) -> None:
        """C_Login(CKU_USER) on the token's session, after a C_Logout so that the PIN is
        really checked, then C_Logout: nothing stays unlocked (SECURITY #36). On a
        protected authentication path pass "": the PIN pad asks."""
        secret = self._pin_argument(pin)
        assert secret is not None

        def check(session: Session) -> None:
            with self._logged_in(session, secret):
                pass

        with _wiped(secret):
            self._run("verify PIN", check)

    def sign_digest(self, credential_id: str, digest: bytes, algorithm: SignatureAlgorithm,
                    pin: str | None = None) -> bytes:
        """Sign a digest with CKM_ECDSA, CKM_RSA_PKCS or CKM_RSA_PKCS_PSS (PKCS#11 v2.40
        §2.3.6, §2.1.6, §2.1.11). With `pin` the user is logged in right before and out
        right after ("" on a PIN pad); a key with CKA_ALWAYS_AUTHENTICATE also gets a
        context-specific login for this signature alone."""
        secret = self._pin_argument(pin)
        key_id = _parse_id(credential_id)
        if len(digest) != algorithm.hash.digest_size:
            raise InvalidInput(f"a {algorithm.hash.value} digest has "
                               f"{algorithm.hash.digest_size} bytes, not {len(digest)}")

        def op(session: Session) -> bytes:
            try:
                return sign(session)
            except (p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid):
                # Another application replaced the key since we found it: look again, once.
                self._key_cache.clear()
                return sign(session)

        def sign(session: Session) -> bytes:
            if secret is None:  # the hot path: no login, no context managers
                return sign_in_state(session)
            with self._logged_in(session, secret):
                return sign_in_state(session)

        def sign_in_state(session: Session) -> bytes:
            key, attrs, key_type = self._signing_key(session, key_id, credential_id)
            mechanism, parameter, data = signing_input(algorithm, key_type, digest)
            if mechanism not in self._mechanism_list():
                raise UnsupportedMechanism(f"the token does not offer {mechanism.name}")
            if log.isEnabledFor(TRAFFIC):
                log.log(TRAFFIC, "sign %s with key %s: %s over %d bytes", algorithm,
                        credential_id, mechanism.name, len(data))
            if attrs.get(Attribute.ALWAYS_AUTHENTICATE):
                raw = self._sign_always_authenticate(
                    session, key, mechanism, parameter, data, secret, credential_id)
            elif isinstance(key, SignMixin):
                assert key.handle is not None
                raw = self._cryptoki.sign(_handle(session), key.handle, int(mechanism),
                                          parameter, data)
            else:
                raise UnsupportedMechanism(f"key {credential_id} may not sign (CKA_SIGN)")
            return _der_ecdsa(raw) if key_type.is_ec else raw

        what = f"sign with key {credential_id}"
        if secret is None:
            return self._run(what, op)
        with _wiped(secret):
            return self._run(what, op)

    def generate_key(self, credential_id: str, key_type: KeyType, pin: str | None = None
                     ) -> bytes:
        """C_GenerateKeyPair (PKCS#11 v2.40 §5.14): token objects with CKA_ID; the private
        key CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN and nothing else. Keys
        and a certificate with the same CKA_ID are destroyed once the new pair exists."""
        secret = self._pin_argument(pin)
        key_id = _parse_id(credential_id)
        mechanism = _GENERATION_MECHANISMS[key_type]

        def op(session: Session) -> bytes:
            if mechanism not in self._mechanism_list():
                raise UnsupportedMechanism(f"the token does not offer {mechanism.name}")
            self._key_cache.clear()  # the keys with this CKA_ID are about to be replaced
            with self._logged_in(session, secret):
                old = [obj for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY,
                                       ObjectClass.CERTIFICATE)
                       for obj in self._find(session, cls, key_id)]
                public_template: dict[Attribute, Any] = {Attribute.PRIVATE: False}
                if key_type.is_ec:
                    public_template[Attribute.EC_PARAMS] = _CURVE_PARAMS[key_type]
                private_template = {Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                                    Attribute.EXTRACTABLE: False, Attribute.SIGN: True}
                log.log(TRAFFIC, "C_GenerateKeyPair(%s, %s, id=%s)", mechanism.name,
                        key_type.value, credential_id)
                public, _private = session.generate_keypair(
                    P11KeyType.EC if key_type.is_ec else P11KeyType.RSA,
                    None if key_type.is_ec else key_type.size,
                    id=key_id, label=f"qsign {credential_id}", store=True,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    mechanism=mechanism, public_template=public_template,
                    private_template=private_template)
                attrs = _attributes(public, [Attribute.KEY_TYPE, Attribute.EC_PARAMS,
                                             Attribute.EC_POINT, Attribute.MODULUS,
                                             Attribute.PUBLIC_EXPONENT])
                spki = _spki_of(attrs)
                if spki is None:
                    raise OperationFailed("the token answered a public key qsign cannot read")
                for obj in old:
                    log.log(TRAFFIC, "C_DestroyObject(%s): replaced by the new key",
                            obj.handle)
                    obj.destroy()
                return spki

        with _wiped(secret):
            return self._run(f"generate key {credential_id}", op)

    def attest(self, credential_id: str) -> list[bytes]:
        raise UnsupportedMechanism("PKCS#11 has no standard key attestation")

    def put_certificate(self, credential_id: str, certificate: bytes, pin: str | None = None
                        ) -> None:
        """Store an X.509 certificate (CKO_CERTIFICATE, CKC_X_509; PKCS#11 v2.40 §4.6.3)
        with the key's CKA_ID, replacing the one there. A certificate whose public key is
        not the key's is refused."""
        secret = self._pin_argument(pin)
        key_id = _parse_id(credential_id)
        try:
            tbs = asn1_x509.Certificate.load(certificate, strict=True)["tbs_certificate"]
            subject, issuer = tbs["subject"].dump(), tbs["issuer"].dump()
            serial = tbs["serial_number"].dump()
            certified_key = _spki(x509.load_der_x509_certificate(certificate).public_key())
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"not a DER X.509 certificate: {exc}") from exc

        def op(session: Session) -> None:
            with self._logged_in(session, secret):
                found = self._objects(session, key_id).get(key_id)
                if found is None or not (found.private or found.public):
                    raise KeyNotFound(credential_id)
                for attrs in found.public + found.private:
                    spki = _spki_of(attrs)
                    if spki is not None and spki != certified_key:
                        raise InvalidInput(f"the certificate is not for key {credential_id}")
                old = self._find(session, ObjectClass.CERTIFICATE, key_id)
                label = next((_label(a) for a in found.private + found.public if _label(a)),
                             f"qsign {credential_id}")
                log.log(TRAFFIC, "C_CreateObject(CKO_CERTIFICATE, id=%s, %d bytes)",
                        credential_id, len(certificate))
                session.create_object({
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True, Attribute.PRIVATE: False,
                    Attribute.ID: key_id, Attribute.LABEL: label,
                    Attribute.SUBJECT: subject, Attribute.ISSUER: issuer,
                    Attribute.SERIAL_NUMBER: serial, Attribute.VALUE: certificate,
                })
                for obj in old:
                    log.log(TRAFFIC, "C_DestroyObject(%s): replaced certificate", obj.handle)
                    obj.destroy()

        with _wiped(secret):
            self._run(f"store certificate {credential_id}", op)

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """C_SetPIN (PKCS#11 v2.40 §5.6) in a user session: logged in with the old PIN, out
        afterwards. On a PIN pad pass "" for both: the pad asks for them, no login first."""
        old = self._pin_argument(old_pin)
        new = self._pin_argument(new_pin)
        assert old is not None and new is not None

        def op(session: Session) -> None:
            if self._protected:
                self._set_pin(session, old, new)
                return
            with self._logged_in(session, old):
                self._set_pin(session, old, new)

        with _wiped(old, new):
            self._run("change PIN", op)

    def unblock_pin(self, puk: str, new_pin: str) -> None:
        raise UnsupportedMechanism(
            "PKCS#11 has no PUK: a blocked user PIN is reset by the token's security "
            "officer (C_InitPIN) with the vendor's tools")

    def close(self) -> None:
        """Log out and close the token's session (it is reopened if the token is used again)."""
        session, self._session = self._session, None
        if session is None or self._generation != self._module.generation:
            return
        try:
            info = self._cryptoki.session_info(_handle(session))
            if info.slot_id != self._slot_id:
                return  # the module gave the handle to another slot: not ours to close
            if info.user_logged_in:
                self._logout(session)
            log.log(TRAFFIC, "C_CloseSession(%d)", _handle(session))
            self._cryptoki.sessions_ended()
            session.close()
        except p11e.PKCS11Error as exc:
            log.debug("slot %d: closing the session: %s", self._slot_id, type(exc).__name__)

    # -- session ---------------------------------------------------------------------------

    @property
    def _protected(self) -> bool:
        return bool(self._flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH)

    def _token_flags(self) -> int:
        token = _call("C_GetTokenInfo", self._slot.get_token)
        if _serial_text(token.serial) != self._serial:
            raise TokenRemoved(f"slot {self._slot_id} now holds another token")
        self._flags = int(token.flags)
        return self._flags

    def _mechanism_list(self) -> set[Any]:
        if self._mechanisms is None:
            self._mechanisms = set(_call("C_GetMechanismList", self._slot.get_mechanisms))
        return self._mechanisms

    def _current_session(self) -> Session:
        """The token's session, checked first (C_GetSessionInfo): after C_Finalize,
        C_CloseAllSessions or a closed handle a new one is opened, and a handle the module
        has since given to another slot's session is never used."""
        session = self._session
        if session is not None and self._generation != self._module.generation:
            log.debug("slot %d: the module was re-initialised", self._slot_id)
            session = None
        if session is not None and self._checked_epoch == self._cryptoki.session_epoch:
            return session  # no session of the module ended since the last check
        if session is not None:
            try:
                owner = self._cryptoki.session_info(_handle(session)).slot_id
            except _SESSION_LOST:
                log.debug("slot %d: session %d is gone", self._slot_id, _handle(session))
                session = None
            else:
                if owner != self._slot_id:
                    log.debug("slot %d: handle %d now belongs to slot %d", self._slot_id,
                              _handle(session), owner)
                    session = None
                else:
                    self._checked_epoch = self._cryptoki.session_epoch
        if session is None:
            self._session = None
            self._generation = self._module.generation
            rw = not self._token_flags() & TokenFlag.WRITE_PROTECTED
            session = self._slot.get_token().open(rw=rw)
            self._checked_epoch = self._cryptoki.session_epoch
            log.log(TRAFFIC, "C_OpenSession(slot=%d, rw=%s) -> %d", self._slot_id, rw,
                    _handle(session))
            self._session = session
        return session

    def _run(self, what: str, op: Callable[[Session], T]) -> T:
        """Run `op` on the token's session, reopened and `op` run again once if the module
        lost the session meanwhile (CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED; a loss
        before `op` is found by `_current_session`). Running again is safe: a failed call
        did nothing, generation and certificate storage replace what has the same CKA_ID.
        Removal (CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED) is final: never retried."""
        retried = False
        while True:
            try:
                return op(self._current_session())
            except _SESSION_LOST as exc:
                self._session = None
                if retried:
                    raise error_for_pkcs11(exc, what=what) from exc
                log.debug("%s: %s; reopening the session", what, type(exc).__name__)
                retried = True
            except p11e.PKCS11Error as exc:
                error = error_for_pkcs11(exc, what=what)
                if isinstance(error, TokenRemoved):
                    self._session = None
                raise error from exc
            except TokenRemoved:
                self._session = None
                raise

    # -- PINs ------------------------------------------------------------------------------

    def _pin_argument(self, pin: str | None) -> _Secret | None:
        """A PIN checked before anything reaches the module. A token with a protected
        authentication path is never sent one: for it "" means 'on the PIN pad'."""
        if pin is None:
            return None
        if self._protected:
            if pin:
                raise ProtectedAuthenticationPath(
                    "this token takes its PIN on its own PIN pad; none may be sent to it")
            return _Secret(None)
        if not pin:
            raise PinFormatInvalid("the PIN is empty")
        if "\0" in pin:
            raise PinFormatInvalid("the PIN contains a NUL character")
        return _Secret(pin)

    def _login(self, session: Session, secret: _Secret) -> None:
        """C_Logout when logged in, then C_Login(CKU_USER), so the token checks this PIN."""
        handle = _handle(session)
        try:
            if self._cryptoki.session_info(handle).user_logged_in:
                self._logout(session)
            self._cryptoki.login(handle, CKU_USER, secret)
        except p11e.UserAlreadyLoggedIn:
            log.debug("slot %d: already logged in", self._slot_id)  # by a race; still fine
        except _PIN_FAILURES as exc:
            raise self._pin_error(exc, "verify PIN") from exc

    def _pin_error(self, exc: p11e.PKCS11Error, what: str) -> TokenError:
        """The domain error for a refused PIN, with the tries left the token flags show."""
        try:
            flags: int | None = self._token_flags()
        except TokenError:
            flags = None
        return error_for_pkcs11(exc, what=what, token_flags=flags)

    def _logout(self, session: Session) -> None:
        with suppress(p11e.UserNotLoggedIn):
            self._cryptoki.logout(_handle(session))

    @contextmanager
    def _logged_in(self, session: Session, secret: _Secret | None) -> Iterator[None]:
        """With a PIN: logged in for the block and logged out after it, whatever happens
        (the token is not left unlocked). Without: the block runs in the token's state."""
        if secret is None:
            yield
            return
        self._login(session, secret)
        try:
            yield
        finally:
            try:
                self._logout(session)
            except p11e.PKCS11Error as exc:
                # Closing every session of the slot ends the login for sure (v2.40 §5.6).
                log.warning("slot %d: C_Logout failed (%s); closing the slot's sessions",
                            self._slot_id, type(exc).__name__)
                self._session = None
                with suppress(p11e.PKCS11Error):
                    self._cryptoki.close_all_sessions(self._slot_id)

    def _set_pin(self, session: Session, old: _Secret, new: _Secret) -> None:
        try:
            self._cryptoki.set_pin(_handle(session), old, new)
        except _PIN_FAILURES as exc:
            raise self._pin_error(exc, "change PIN") from exc

    def _sign_always_authenticate(self, session: Session, key: Object, mechanism: Mechanism,
                                  parameter: bytes | None, data: bytes,
                                  secret: _Secret | None, credential_id: str) -> bytes:
        if secret is None:
            if not self._protected:
                raise NotAuthenticated(f"key {credential_id} needs the PIN for each signature")
            secret = _Secret(None)
        assert key.handle is not None
        try:
            return self._cryptoki.sign(
                _handle(session), key.handle, int(mechanism), parameter, data, secret)
        except p11e.PKCS11Error as exc:
            # The signing operation may still be active: end it with the session.
            self._session = None
            self._cryptoki.sessions_ended()
            with suppress(p11e.PKCS11Error):
                session.close()
            if isinstance(exc, _PIN_FAILURES):
                raise self._pin_error(exc, f"sign with key {credential_id}") from exc
            raise

    # -- objects ---------------------------------------------------------------------------

    def _find(self, session: Session, object_class: ObjectClass, key_id: bytes | None = None
              ) -> list[Object]:
        template: dict[Attribute, Any] = {Attribute.CLASS: object_class}
        if key_id is not None:
            template[Attribute.ID] = key_id
        found = list(session.get_objects(template))  # the search ends before objects are read
        log.log(TRAFFIC, "C_FindObjects(%s%s) -> %d", object_class.name,
                "" if key_id is None else f", id={key_id.hex()}", len(found))
        return found

    def _objects(self, session: Session, key_id: bytes | None = None) -> dict[bytes, _Found]:
        """Private keys, public keys and X.509 certificates, grouped by CKA_ID."""
        groups: dict[bytes, _Found] = {}
        for object_class, keys in ((ObjectClass.PRIVATE_KEY, _PRIVATE_ATTRIBUTES),
                                   (ObjectClass.PUBLIC_KEY, _PUBLIC_ATTRIBUTES),
                                   (ObjectClass.CERTIFICATE, _CERTIFICATE_ATTRIBUTES)):
            for obj in self._find(session, object_class, key_id):
                attrs = _attributes(obj, keys)
                object_id = bytes(attrs.get(Attribute.ID) or b"")
                if not object_id:
                    continue  # nothing can name it
                group = groups.setdefault(object_id, _Found([], [], []))
                if object_class is ObjectClass.PRIVATE_KEY:
                    group.private.append(attrs)
                elif object_class is ObjectClass.PUBLIC_KEY:
                    group.public.append(attrs)
                elif (attrs.get(Attribute.CERTIFICATE_TYPE) == CertificateType.X_509
                      and attrs.get(Attribute.VALUE)):
                    group.certificates.append(attrs)
        return groups

    def _credentials(self, session: Session) -> list[Credential]:
        groups = self._objects(session)
        logged_in = self._cryptoki.session_info(_handle(session)).user_logged_in
        pool = [c for group in groups.values() for c in group.certificates]
        credentials = []
        for key_id, group in sorted(groups.items()):
            if not group.private and (logged_in or not group.public):
                continue  # no private key, and none that a login would show
            key_type = next((t for t in map(_key_type_of, group.private + group.public) if t),
                            None)
            if key_type is None and group.certificates:
                key_type = _key_type_of_certificate(bytes(group.certificates[0][Attribute.VALUE]))
            if key_type is None:
                log.debug("slot %d: key %s is of a type qsign does not use", self._slot_id,
                          key_id.hex())
                continue
            certificate = group.certificates[0] if group.certificates else None
            label = next((_label(a) for a in group.private + group.public + group.certificates
                          if _label(a)), "")
            credentials.append(Credential(
                id=key_id.hex().upper(), label=label, key_type=key_type,
                certificate=None if certificate is None else bytes(certificate[Attribute.VALUE]),
                chain=() if certificate is None else _chain(certificate, pool),
                pin_always=any(bool(a.get(Attribute.ALWAYS_AUTHENTICATE))
                               for a in group.private)))
        return credentials

    def _signing_key(self, session: Session, key_id: bytes, credential_id: str
                     ) -> tuple[Object, dict[Attribute, Any], KeyType]:
        """The private key for a signature, remembered for this session: finding it and
        reading its attributes costs more than a SoftHSM2 signature. Dropped with the
        session and whenever keys or certificates change."""
        if self._key_cache_session is not session:
            self._key_cache.clear()
            self._key_cache_session = session
        cached = self._key_cache.get(key_id)
        if cached is None:
            key, attrs = self._private_key(session, key_id, credential_id)
            key_type = _key_type_of(attrs) or self._key_type_elsewhere(session, key_id)
            if key_type is None:
                raise UnsupportedMechanism(
                    f"key {credential_id} is of a type or size qsign does not sign with")
            cached = (key, attrs, key_type)
            self._key_cache[key_id] = cached
        return cached

    def _private_key(self, session: Session, key_id: bytes, credential_id: str
                     ) -> tuple[Object, dict[Attribute, Any]]:
        keys = self._find(session, ObjectClass.PRIVATE_KEY, key_id)
        if len(keys) > 1:
            raise OperationFailed(f"{len(keys)} private keys share the id {credential_id}")
        if not keys:
            hidden = not self._cryptoki.session_info(_handle(session)).user_logged_in
            if hidden and (self._find(session, ObjectClass.PUBLIC_KEY, key_id)
                           or self._find(session, ObjectClass.CERTIFICATE, key_id)):
                raise NotAuthenticated(f"key {credential_id} shows only after the PIN")
            raise KeyNotFound(credential_id)
        return keys[0], _attributes(keys[0], _PRIVATE_ATTRIBUTES)

    def _key_type_elsewhere(self, session: Session, key_id: bytes) -> KeyType | None:
        """The key type from the public key or certificate of the same CKA_ID."""
        group = self._objects(session, key_id).get(key_id)
        if group is None:
            return None
        for attrs in group.public:
            key_type = _key_type_of(attrs)
            if key_type is not None:
                return key_type
        for attrs in group.certificates:
            key_type = _key_type_of_certificate(bytes(attrs[Attribute.VALUE]))
            if key_type is not None:
                return key_type
        return None


def _call(what: str, fn: Callable[[], T]) -> T:
    """A module call outside any session, its errors mapped."""
    try:
        return fn()
    except p11e.PKCS11Error as exc:
        raise error_for_pkcs11(exc, what=what) from exc
