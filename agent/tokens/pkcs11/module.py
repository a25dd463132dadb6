"""PKCS#11 modules: found on the system, loaded and C_Initialize'd once per process
(PKCS#11 v2.40 §5.4, §6.6.2), their slots listed, their tokens opened.

`pkcs11.lib()` calls `C_Initialize(NULL)` (see `lib.initialize` in python-pkcs11's
`_pkcs11.pyx`), which promises the module that no two threads ever call it at once. The
registry runs one worker thread per token, so two tokens of one module are called
concurrently: right after python-pkcs11 loads a module (before any session exists) it is
finalised and initialised again with `CKF_OS_LOCKING_OK`. A module that answers
CKR_CANT_LOCK is initialised without it and `Pkcs11Module.os_locking` says so.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import exceptions as p11e

from agent.tokens.errors import CommunicationError
from agent.tokens.pkcs11.ckr import error_for_pkcs11
from agent.tokens.pkcs11.cryptoki import Cryptoki
from agent.tokens.pkcs11.slot import Pkcs11Slot, serial_text
from agent.tokens.pkcs11.token import Pkcs11Token
from ground.traffic import TRAFFIC

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as _python_pkcs11_lib

log = logging.getLogger(__name__)

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
            self.cryptoki = Cryptoki(real)
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
    def cryptoki(self) -> Cryptoki:
        """The ctypes view of the module's functions (`cryptoki.Cryptoki`)."""
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
                slot_id=int(slot.slot_id), serial=serial_text(token.serial),
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
            self.cryptoki.close_all_sessions(slot_id)
        except p11e.PKCS11Error as exc:
            raise error_for_pkcs11(exc, what="C_CloseAllSessions") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pkcs11Module) and other.realpath == self.realpath

    def __hash__(self) -> int:
        return hash(self.realpath)

    def __repr__(self) -> str:
        return f"Pkcs11Module({self.path!r})"

