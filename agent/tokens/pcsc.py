"""PC/SC through pyscard: the card transport and the reader monitor.

The only module of the token layer that imports pyscard. SCARD_* codes are
mapped to domain errors here, once. A context that pcscd dropped (restart,
stop) is replaced by a new one; a card reset under us is reported as
`CardReset` after reconnecting, so the layer above can forget the PIN state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from smartcard import scard as S

from agent.tokens.errors import CardReset, CommunicationError, TokenError, TokenRemoved

log = logging.getLogger(__name__)

PNP_READER = "\\\\?PnP?\\Notification"
_PROTOCOLS = S.SCARD_PROTOCOL_T0 | S.SCARD_PROTOCOL_T1
_REMOVED = frozenset({
    S.SCARD_W_REMOVED_CARD, S.SCARD_E_NO_SMARTCARD, S.SCARD_E_READER_UNAVAILABLE,
    S.SCARD_E_UNKNOWN_READER,
})
_CONTEXT_LOST = frozenset({
    S.SCARD_E_NO_SERVICE, S.SCARD_E_SERVICE_STOPPED, S.SCARD_E_INVALID_HANDLE,
    S.SCARD_F_COMM_ERROR,
})
_CARD_PRESENT = 0x0004  # SCardStatus dwState bit (pcsc-lite pcsclite.h), not in pyscard
_RESET = frozenset({S.SCARD_W_RESET_CARD, S.SCARD_W_UNPOWERED_CARD})


def error_for_scard(hresult: int, what: str) -> TokenError:
    """The one mapping from PC/SC result codes to domain errors."""
    message = f"{what}: {S.SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})"
    if hresult in _REMOVED:
        return TokenRemoved(message)
    return CommunicationError(message)


class PcscContext:
    """A PC/SC context, replaced when pcscd drops it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: int | None = None

    def handle(self) -> int:
        with self._lock:
            if self._handle is None:
                hresult, handle = S.SCardEstablishContext(S.SCARD_SCOPE_USER)
                if hresult != S.SCARD_S_SUCCESS:
                    raise error_for_scard(hresult, "establish PC/SC context")
                self._handle = handle
            return self._handle

    def invalidate(self, handle: int | None = None) -> None:
        """Drop the context (only `handle`, if given, so a fresh one is kept)."""
        with self._lock:
            if self._handle is not None and handle in (None, self._handle):
                S.SCardReleaseContext(self._handle)
                self._handle = None

    def readers(self) -> list[str]:
        handle = self.handle()
        hresult, readers = S.SCardListReaders(handle, [])
        if hresult == S.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult in _CONTEXT_LOST:
            self.invalidate(handle)
            raise error_for_scard(hresult, "list readers")
        if hresult != S.SCARD_S_SUCCESS:
            raise error_for_scard(hresult, "list readers")
        return list(readers)

    def close(self) -> None:
        self.invalidate()


class PcscConnection:
    """A shared connection to the card in `reader`: the token layer's `Connection`."""

    def __init__(self, context: PcscContext, reader: str) -> None:
        self.context = context
        self.reader = reader
        self._card: int | None = None
        self._protocol = 0
        self._connect()

    def _connect(self) -> None:
        ctx = self.context.handle()
        hresult, card, protocol = S.SCardConnect(ctx, self.reader, S.SCARD_SHARE_SHARED,
                                                 _PROTOCOLS)
        if hresult in _CONTEXT_LOST:
            self.context.invalidate(ctx)
            ctx = self.context.handle()
            hresult, card, protocol = S.SCardConnect(ctx, self.reader, S.SCARD_SHARE_SHARED,
                                                     _PROTOCOLS)
        if hresult in _RESET:
            raise CommunicationError(f"{self.reader}: card not powered")
        if hresult != S.SCARD_S_SUCCESS:
            raise error_for_scard(hresult, f"connect to {self.reader}")
        self._card, self._protocol = card, protocol

    def _handle(self) -> int:
        if self._card is None:
            raise TokenRemoved(f"{self.reader}: connection closed")
        return self._card

    def _check(self, hresult: int, what: str) -> None:
        if hresult == S.SCARD_S_SUCCESS:
            return
        if hresult in _RESET:
            # Another application or a power cycle reset the card: reconnect, then
            # tell the caller the PIN is no longer verified.
            hresult2, protocol = S.SCardReconnect(self._handle(), S.SCARD_SHARE_SHARED,
                                                  _PROTOCOLS, S.SCARD_LEAVE_CARD)
            if hresult2 == S.SCARD_S_SUCCESS:
                self._protocol = protocol
                raise CardReset(f"{self.reader}: card reset")
            hresult = hresult2
        if hresult == S.SCARD_E_NOT_TRANSACTED and self._card_left():
            hresult = S.SCARD_W_REMOVED_CARD  # the APDU failed because the card went away
        if hresult in _CONTEXT_LOST:
            self.context.invalidate()
            self._card = None
        elif hresult in _REMOVED:
            self._card = None
        raise error_for_scard(hresult, f"{what} on {self.reader}")

    def _card_left(self, within: float = 1.5) -> bool:
        """After a failed exchange: did the card leave the reader? pcscd notices a
        removal a poll later than the failed APDU, so ask for a short while."""
        deadline = time.monotonic() + within
        while True:
            hresult, _, state, _, _ = S.SCardStatus(self._handle())
            if hresult in _REMOVED or (hresult == S.SCARD_S_SUCCESS
                                       and not state & _CARD_PRESENT):
                return True
            if hresult != S.SCARD_S_SUCCESS or time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        hresult, response = S.SCardTransmit(self._handle(), self._protocol, list(apdu))
        self._check(hresult, "transmit")
        if len(response) < 2:
            # vpcd (and some readers) answer an APDU cut short by a removal with an empty
            # response and a success code: a removal, if the card is gone.
            if self._card_left():
                self._card = None
                raise TokenRemoved(f"{self.reader}: the card was removed")
            raise CommunicationError(f"{self.reader}: response without a status word")
        return bytes(response[:-2]), (response[-2] << 8) | response[-1]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """SCardBeginTransaction: no other application's APDU comes between ours.
        Held for one operation only, never while a person types a PIN."""
        hresult = S.SCardBeginTransaction(self._handle())
        self._check(hresult, "begin transaction")
        try:
            yield
        finally:
            if self._card is not None:
                end = S.SCardEndTransaction(self._card, S.SCARD_LEAVE_CARD)
                if end not in (S.SCARD_S_SUCCESS, *_REMOVED, *_RESET, *_CONTEXT_LOST):
                    log.warning("%s: end transaction: %s", self.reader,
                                S.SCardGetErrorMessage(end))

    def close(self) -> None:
        if self._card is not None:
            S.SCardDisconnect(self._card, S.SCARD_LEAVE_CARD)
            self._card = None


@dataclass(frozen=True, slots=True)
class ReaderState:
    reader: str
    present: bool
    atr: bytes
    events: int  # pcsc-lite's card event counter (insertions and removals)


class ReaderMonitor:
    """Watches readers and cards with SCardGetStatusChange on its own thread.

    Calls `on_change(ReaderState)` for every reader whose card came or went
    (and with present=False for a reader that disappeared). Survives pcscd
    restarts: a lost context is replaced, and every reader is reported afresh.
    """

    def __init__(self, on_change: Callable[[ReaderState], None], *,
                 on_service_restored: Callable[[], None] | None = None,
                 poll_ms: int = 500) -> None:
        self._on_change = on_change
        self._on_service_restored = on_service_restored
        self._service_lost = False
        self._poll_ms = poll_ms
        self._stop = threading.Event()
        self._context = PcscContext()
        self._known: dict[str, ReaderState] = {}
        self._thread = threading.Thread(target=self._run, name="pcsc-monitor", daemon=True)
        self.scans = threading.Event()  # set after each complete scan

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            handle = self._context.handle()
            S.SCardCancel(handle)
        except TokenError:
            log.debug("no PC/SC context to cancel")
        self._thread.join(5)
        self._context.close()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._watch()
                backoff = 0.1
            except TokenError as exc:
                log.info("PC/SC unavailable (%s); retrying", exc)
                self._context.invalidate()
                self._service_lost = True
                self._forget_all()
                self.scans.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _forget_all(self) -> None:
        for reader in list(self._known):
            self._report(ReaderState(reader, False, b"", 0))
        self._known.clear()

    def _report(self, state: ReaderState) -> None:
        try:
            self._on_change(state)
        except Exception:  # a subscriber's bug must not stop the monitor
            log.exception("reader change handler failed")

    def _watch(self) -> None:
        handle = self._context.handle()
        readers = self._context.readers()
        if self._service_lost:
            self._service_lost = False
            if self._on_service_restored is not None:
                self._on_service_restored()
        for gone in set(self._known) - set(readers):
            self._report(ReaderState(gone, False, b"", 0))
            del self._known[gone]
        states = [(r, S.SCARD_STATE_UNAWARE) for r in readers] + [
            (PNP_READER, S.SCARD_STATE_UNAWARE)]
        first = True
        while not self._stop.is_set():
            hresult, new_states = S.SCardGetStatusChange(handle, 0 if first else self._poll_ms,
                                                          states)
            first = False
            if hresult == S.SCARD_E_TIMEOUT:
                self.scans.set()
                continue
            if hresult == S.SCARD_E_CANCELLED:
                return
            if hresult != S.SCARD_S_SUCCESS:
                if hresult in _CONTEXT_LOST or hresult == S.SCARD_E_NO_READERS_AVAILABLE:
                    self._context.invalidate(handle)
                raise error_for_scard(hresult, "watch readers")
            reader_list_changed = False
            next_states = []
            for reader, event_state, atr in new_states:
                if reader == PNP_READER:
                    reader_list_changed = bool(event_state & S.SCARD_STATE_CHANGED)
                    next_states.append((reader, event_state & ~S.SCARD_STATE_CHANGED))
                    continue
                next_states.append((reader, event_state & ~S.SCARD_STATE_CHANGED))
                self._update(reader, event_state, bytes(atr))
            states = next_states
            self.scans.set()
            if reader_list_changed:
                return  # list readers again

    def _update(self, reader: str, event_state: int, atr: bytes) -> None:
        if event_state & (S.SCARD_STATE_UNKNOWN | S.SCARD_STATE_UNAVAILABLE):
            present = False
        else:
            present = bool(event_state & S.SCARD_STATE_PRESENT) and not (
                event_state & S.SCARD_STATE_MUTE)
        state = ReaderState(reader, present, atr if present else b"", event_state >> 16)
        old = self._known.get(reader)
        if old is not None and (old.present, old.atr, old.events) == (
                state.present, state.atr, state.events):
            return
        if old is not None and old.present and present and old.events != state.events:
            # Swapped between two polls: report the removal first.
            self._report(ReaderState(reader, False, b"", state.events))
        self._known[reader] = state
        self._report(state)

