"""The module's CK_FUNCTION_LIST through ctypes, for the calls python-pkcs11 does not
make the way the security model needs (made on the sessions python-pkcs11 opened):

* `C_Initialize` with `CKF_OS_LOCKING_OK` (PKCS#11 v2.40 §5.4): one worker thread per
  token means two tokens of one module are called at once.
* `C_Login` / `C_Logout` on the token's own session, with a NULL PIN for a protected
  authentication path (PIN pad), from a buffer that is wiped (`Secret`).
* `C_SignInit` + `C_Login(CKU_CONTEXT_SPECIFIC)` + `C_Sign` for keys with
  CKA_ALWAYS_AUTHENTICATE (python-pkcs11's `sign(pin=...)` cannot pass a NULL PIN).
* `C_SetPIN`, `C_GetSessionInfo`, `C_CloseAllSessions`, `C_Finalize`.
* `C_FindObjects*` and `C_GetAttributeValue` for the key a signature needs, found again
  in each login (python-pkcs11 reads more attributes than that to make its objects).

Every failure raises the python-pkcs11 exception of its CKR code (`ckr.exception_for_rv`).
Traces go to the TRAFFIC level; a PIN appears in them only as its length.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pkcs11 import exceptions as p11e
from pkcs11.constants import UserType
from pkcs11.types import Session

from agent.tokens.pkcs11.ckr import (
    CKR_ATTRIBUTE_SENSITIVE,
    CKR_ATTRIBUTE_TYPE_INVALID,
    CKR_BUFFER_TOO_SMALL,
    CKR_CANT_LOCK,
    CKR_CRYPTOKI_NOT_INITIALIZED,
    CKR_OK,
    exception_for_rv,
)
from ground.traffic import TRAFFIC

log = logging.getLogger(__name__)

_CK_ULONG = ctypes.c_ulong  # CK_ULONG is `unsigned long` (Linux, macOS; not Windows' packing)
_BYTES = ctypes.POINTER(ctypes.c_ubyte)

_MAX_SIGNATURE = 4096
CKF_OS_LOCKING_OK = 0x2
CKU_USER = int(UserType.USER)
CKU_CONTEXT_SPECIFIC = 2
CKS_RO_USER_FUNCTIONS = 1
CKS_RW_USER_FUNCTIONS = 3
CKA_CLASS = 0x000
CKA_ID = 0x102
_UNAVAILABLE = _CK_ULONG(-1).value  # CK_UNAVAILABLE_INFORMATION
_ATTRIBUTE_BUFFER = 512

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


class _CkAttribute(ctypes.Structure):
    _fields_ = (("type", _CK_ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", _CK_ULONG))


class _CkSessionInfo(ctypes.Structure):
    _fields_ = (("slotID", _CK_ULONG), ("state", _CK_ULONG), ("flags", _CK_ULONG),
                ("ulDeviceError", _CK_ULONG))


class CkRsaPkcsPssParams(ctypes.Structure):
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
    "C_GetAttributeValue": ctypes.CFUNCTYPE(_RV, _CK_ULONG, _CK_ULONG,
                                            ctypes.POINTER(_CkAttribute), _CK_ULONG),
    "C_FindObjectsInit": ctypes.CFUNCTYPE(_RV, _CK_ULONG, ctypes.POINTER(_CkAttribute),
                                          _CK_ULONG),
    "C_FindObjects": ctypes.CFUNCTYPE(_RV, _CK_ULONG, ctypes.POINTER(_CK_ULONG), _CK_ULONG,
                                      ctypes.POINTER(_CK_ULONG)),
    "C_FindObjectsFinal": ctypes.CFUNCTYPE(_RV, _CK_ULONG),
    "C_SignInit": ctypes.CFUNCTYPE(_RV, _CK_ULONG, ctypes.POINTER(_CkMechanism), _CK_ULONG),
    # char* for data in and signature out: bytes and string buffers pass without copies.
    "C_Sign": ctypes.CFUNCTYPE(_RV, _CK_ULONG, ctypes.c_char_p, _CK_ULONG, ctypes.c_char_p,
                               ctypes.POINTER(_CK_ULONG)),
}


def handle(session: Session) -> int:
    """The CK_SESSION_HANDLE of a python-pkcs11 session."""
    return int(session.handle)  # type: ignore[attr-defined]  # missing from the stubs


class Secret:
    """A PIN in a C buffer that `wipe` zeroes; `Secret(None)` is the PIN pad (a NULL PIN).
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
def wiped(*secrets: Secret | None) -> Iterator[None]:
    try:
        yield
    finally:
        for secret in secrets:
            if secret is not None:
                secret.wipe()


@dataclass(frozen=True, slots=True)
class SessionInfo:
    slot_id: int
    state: int

    @property
    def user_logged_in(self) -> bool:
        return self.state in (CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS)


class Cryptoki:
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
        # SlotSession.current), so only then is C_GetSessionInfo worth a call.
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
            raise exception_for_rv(rv, call)

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

    def session_info(self, session: int) -> SessionInfo:
        info = _CkSessionInfo()
        self._check(self._fn("C_GetSessionInfo")(session, ctypes.byref(info)),
                    "C_GetSessionInfo")
        return SessionInfo(int(info.slotID), int(info.state))

    def close_all_sessions(self, slot_id: int) -> None:
        self.sessions_ended()
        rv = self._fn("C_CloseAllSessions")(slot_id)
        log.log(TRAFFIC, "C_CloseAllSessions(slot=%d) -> 0x%X", slot_id, rv)
        self._check(rv, "C_CloseAllSessions")

    def login(self, session: int, user_type: int, pin: Secret) -> None:
        rv = self._fn("C_Login")(session, user_type, pin.pointer, pin.length)
        log.log(TRAFFIC, "C_Login(session=%d, user=%d, secret masked, %d bytes) -> 0x%X",
                session, user_type, pin.length, rv)
        self._check(rv, "C_Login")

    def logout(self, session: int) -> None:
        rv = self._fn("C_Logout")(session)
        log.log(TRAFFIC, "C_Logout(session=%d) -> 0x%X", session, rv)
        self._check(rv, "C_Logout")

    def set_pin(self, session: int, old: Secret, new: Secret) -> None:
        rv = self._fn("C_SetPIN")(session, old.pointer, old.length, new.pointer, new.length)
        log.log(TRAFFIC, "C_SetPIN(session=%d, old=%s, new=%s) -> 0x%X", session, old, new, rv)
        self._check(rv, "C_SetPIN")

    def find_objects(self, session: int, object_class: int, object_id: bytes, limit: int
                     ) -> list[int]:
        """C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal (PKCS#11 v2.40 §5.7): at
        most `limit` handles of the objects of one CKO_* class with one CKA_ID."""
        klass = _CK_ULONG(object_class)
        ident = ctypes.create_string_buffer(object_id, len(object_id))
        template = (_CkAttribute * 2)(
            _CkAttribute(CKA_CLASS, ctypes.cast(ctypes.byref(klass), ctypes.c_void_p),
                         ctypes.sizeof(klass)),
            _CkAttribute(CKA_ID, ctypes.cast(ident, ctypes.c_void_p), len(object_id)))
        self._check(self._fn("C_FindObjectsInit")(session, template, 2), "C_FindObjectsInit")
        found = (_CK_ULONG * limit)()
        count = _CK_ULONG(0)
        try:
            self._check(self._fn("C_FindObjects")(session, found, limit, ctypes.byref(count)),
                        "C_FindObjects")
        finally:
            final = self._fn("C_FindObjectsFinal")(session)
        self._check(final, "C_FindObjectsFinal")
        handles = [int(h) for h in found[:count.value]]
        log.log(TRAFFIC, "C_FindObjects(class=0x%X, id=%s) -> %d", object_class,
                object_id.hex(), len(handles))
        return handles

    def attribute_values(self, session: int, handle: int, types: Sequence[int]
                         ) -> dict[int, bytes]:
        """C_GetAttributeValue (PKCS#11 v2.40 §5.7) in one call: the attributes of `types`
        the object has, lets us read and that fit in 512 bytes (an RSA-4096 modulus); the
        others are left out (a module need not say which of those reasons applies)."""
        buffers = [ctypes.create_string_buffer(_ATTRIBUTE_BUFFER) for _ in types]
        template = (_CkAttribute * len(types))(*(
            _CkAttribute(kind, ctypes.cast(buffer, ctypes.c_void_p), _ATTRIBUTE_BUFFER)
            for kind, buffer in zip(types, buffers, strict=True)))
        rv = self._fn("C_GetAttributeValue")(session, handle, template, len(types))
        if rv not in (CKR_OK, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID,
                      CKR_BUFFER_TOO_SMALL):
            self._check(rv, "C_GetAttributeValue")
        return {int(attribute.type): buffer.raw[:attribute.ulValueLen]
                for attribute, buffer in zip(template, buffers, strict=True)
                if attribute.ulValueLen <= _ATTRIBUTE_BUFFER}

    def sign(self, session: int, key: int, mechanism: int, parameter: bytes | None,
             data: bytes, context_pin: Secret | None = None) -> bytes:
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
