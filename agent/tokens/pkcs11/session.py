"""The one session a token holds on its slot, and its recovery.

The session is checked before use (C_GetSessionInfo) whenever the process ended
sessions of the module, and reopened after C_Finalize, C_CloseAllSessions or a closed
handle; an operation the module lost its session under (CKR_SESSION_HANDLE_INVALID,
CKR_SESSION_CLOSED) runs once more on a new one. Removal (CKR_TOKEN_NOT_PRESENT,
CKR_DEVICE_REMOVED) is final. A PIN logs the user in for one block and out after it
(PKCS#11 v2.40 §5.6): nothing stays unlocked (SECURITY #36).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Protocol, TypeVar

from pkcs11 import exceptions as p11e
from pkcs11.constants import TokenFlag
from pkcs11.types import Session

from agent.tokens.errors import (
    PinFormatInvalid,
    ProtectedAuthenticationPath,
    TokenError,
    TokenRemoved,
)
from agent.tokens.pkcs11.ckr import PIN_FAILURES, SESSION_LOST, error_for_pkcs11, mapped_call
from agent.tokens.pkcs11.cryptoki import CKU_USER, Cryptoki, Secret, handle
from agent.tokens.pkcs11.slot import serial_text
from ground.traffic import TRAFFIC

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoadedModule(Protocol):
    """What a token needs of its loaded module (`Pkcs11Module`)."""

    @property
    def path(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def lib(self) -> Any: ...

    @property
    def generation(self) -> int: ...

    @property
    def cryptoki(self) -> Cryptoki: ...


class SlotSession:
    """The session of the token in one slot, opened on first use.

    `flags` are the token's CK_TOKEN_INFO.flags as last read. Not thread-safe: used only
    from the token's worker thread.
    """

    def __init__(self, module: LoadedModule, slot_id: int, slot: Any, serial: str,
                 flags: int) -> None:
        self._module = module
        self._cryptoki = module.cryptoki
        self._slot_id = slot_id
        self._slot = slot
        self._serial = serial
        self.flags = flags
        self._session: Session | None = None
        self._generation = module.generation
        self._mechanisms: set[Any] | None = None
        self._checked_epoch = -1

    @property
    def cryptoki(self) -> Cryptoki:
        return self._cryptoki

    @property
    def protected(self) -> bool:
        """A protected authentication path: the token takes its PIN on its own PIN pad."""
        return bool(self.flags & TokenFlag.PROTECTED_AUTHENTICATION_PATH)

    def token_flags(self) -> int:
        """CK_TOKEN_INFO.flags read again (C_GetTokenInfo), from the same token."""
        token = mapped_call("C_GetTokenInfo", self._slot.get_token)
        if serial_text(token.serial) != self._serial:
            raise TokenRemoved(f"slot {self._slot_id} now holds another token")
        self.flags = int(token.flags)
        return self.flags

    def mechanisms(self) -> set[Any]:
        """C_GetMechanismList, read once."""
        if self._mechanisms is None:
            self._mechanisms = set(mapped_call("C_GetMechanismList", self._slot.get_mechanisms))
        return self._mechanisms

    def user_logged_in(self, session: Session) -> bool:
        return self._cryptoki.session_info(handle(session)).user_logged_in

    def current(self) -> Session:
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
                owner = self._cryptoki.session_info(handle(session)).slot_id
            except SESSION_LOST:
                log.debug("slot %d: session %d is gone", self._slot_id, handle(session))
                session = None
            else:
                if owner != self._slot_id:
                    log.debug("slot %d: handle %d now belongs to slot %d", self._slot_id,
                              handle(session), owner)
                    session = None
                else:
                    self._checked_epoch = self._cryptoki.session_epoch
        if session is None:
            self._session = None
            self._generation = self._module.generation
            rw = not self.token_flags() & TokenFlag.WRITE_PROTECTED
            session = self._slot.get_token().open(rw=rw)
            self._checked_epoch = self._cryptoki.session_epoch
            log.log(TRAFFIC, "C_OpenSession(slot=%d, rw=%s) -> %d", self._slot_id, rw,
                    handle(session))
            self._session = session
        return session

    def run(self, what: str, op: Callable[[Session], T]) -> T:
        """Run `op` on the token's session, reopened and `op` run again once if the module
        lost the session meanwhile (CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED; a loss
        before `op` is found by `current`). Running again is safe: a failed call did
        nothing, generation and certificate storage replace what has the same CKA_ID.
        Removal (CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED) is final: never retried."""
        retried = False
        while True:
            try:
                return op(self.current())
            except SESSION_LOST as exc:
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

    def discard(self, session: Session) -> None:
        """End a session an operation may still be active on; the next use opens another."""
        self._session = None
        self._cryptoki.sessions_ended()
        with suppress(p11e.PKCS11Error):
            session.close()

    def close(self) -> None:
        """Log out and close the session (it is reopened if the token is used again)."""
        session, self._session = self._session, None
        if session is None or self._generation != self._module.generation:
            return
        try:
            info = self._cryptoki.session_info(handle(session))
            if info.slot_id != self._slot_id:
                return  # the module gave the handle to another slot: not ours to close
            if info.user_logged_in:
                self._logout(session)
            log.log(TRAFFIC, "C_CloseSession(%d)", handle(session))
            self._cryptoki.sessions_ended()
            session.close()
        except p11e.PKCS11Error as exc:
            log.debug("slot %d: closing the session: %s", self._slot_id, type(exc).__name__)

    # -- PINs ------------------------------------------------------------------------------

    def pin_argument(self, pin: str | None) -> Secret | None:
        """A PIN checked before anything reaches the module. A token with a protected
        authentication path is never sent one: for it "" means 'on the PIN pad'."""
        if pin is None:
            return None
        if self.protected:
            if pin:
                raise ProtectedAuthenticationPath(
                    "this token takes its PIN on its own PIN pad; none may be sent to it")
            return Secret(None)
        if not pin:
            raise PinFormatInvalid("the PIN is empty")
        if "\0" in pin:
            raise PinFormatInvalid("the PIN contains a NUL character")
        return Secret(pin)

    @contextmanager
    def logged_in(self, session: Session, secret: Secret | None) -> Iterator[None]:
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

    def set_pin(self, session: Session, old: Secret, new: Secret) -> None:
        """C_SetPIN (PKCS#11 v2.40 §5.6), a refused old PIN mapped with its tries left."""
        try:
            self._cryptoki.set_pin(handle(session), old, new)
        except PIN_FAILURES as exc:
            raise self.pin_error(exc, "change PIN") from exc

    def pin_error(self, exc: p11e.PKCS11Error, what: str) -> TokenError:
        """The domain error for a refused PIN, with the tries left the token flags show."""
        try:
            flags: int | None = self.token_flags()
        except TokenError:
            flags = None
        return error_for_pkcs11(exc, what=what, token_flags=flags)

    def _login(self, session: Session, secret: Secret) -> None:
        """C_Logout when logged in, then C_Login(CKU_USER), so the token checks this PIN."""
        session_handle = handle(session)
        try:
            if self._cryptoki.session_info(session_handle).user_logged_in:
                self._logout(session)
            self._cryptoki.login(session_handle, CKU_USER, secret)
        except p11e.UserAlreadyLoggedIn:
            log.debug("slot %d: already logged in", self._slot_id)  # by a race; still fine
        except PIN_FAILURES as exc:
            raise self.pin_error(exc, "verify PIN") from exc

    def _logout(self, session: Session) -> None:
        with suppress(p11e.UserNotLoggedIn):
            self._cryptoki.logout(handle(session))
