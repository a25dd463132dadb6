"""Discovery and hot-plug: every token the agent can reach, across PC/SC readers
and PKCS#11 modules, each once, each with its own worker thread.

PC/SC readers are watched by `ReaderMonitor`; a card is recognised by its ATR
(`atr_profiles.json`), and an unknown ATR is probed with SELECT PIV rather than
refused. PKCS#11 modules are polled for slots. A token seen through both routes
(a PIV card that OpenSC also shows) is listed once, with both routes, matched by
reader name or serial. Subscribers get inserted / removed / changed events; no
restart is ever needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Protocol, TypeVar

from agent.tokens.errors import TokenError, TokenNotFound
from agent.tokens.model import (
    EventKind,
    Route,
    RouteInfo,
    Token,
    TokenEvent,
    TokenInfo,
)
from agent.tokens.piv import PivToken
from agent.tokens.worker import TokenWorker
from ground.piv import DEFAULT_MANAGEMENT_KEY

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AtrProfile:
    name: str
    profile: str  # "piv" or "pkcs11"
    atr: bytes
    mask: bytes

    def matches(self, atr: bytes) -> bool:
        return len(atr) == len(self.atr) and all(
            (a & m) == (b & m) for a, b, m in zip(atr, self.atr, self.mask, strict=True))


class AtrProfiles:
    """The ATR table shipped with the package (`atr_profiles.json`)."""

    def __init__(self, profiles: Sequence[AtrProfile]) -> None:
        self.profiles = list(profiles)

    @classmethod
    def load(cls, text: str | None = None) -> AtrProfiles:
        if text is None:
            text = resources.files("agent.tokens").joinpath("atr_profiles.json").read_text()
        raw = json.loads(text)
        profiles = []
        for item in raw["profiles"]:
            atr = bytes.fromhex(item["atr"])
            mask = bytes.fromhex(item.get("mask", "FF" * len(atr)))
            if len(mask) != len(atr) or item["profile"] not in ("piv", "pkcs11"):
                raise ValueError(f"bad ATR profile entry {item.get('name')!r}")
            profiles.append(AtrProfile(item["name"], item["profile"], atr, mask))
        return cls(profiles)

    def match(self, atr: bytes) -> AtrProfile | None:
        return next((p for p in self.profiles if p.matches(atr)), None)


class Pkcs11Slot(Protocol):
    @property
    def slot_id(self) -> int: ...

    @property
    def serial(self) -> str: ...

    @property
    def description(self) -> str: ...


class Pkcs11Source(Protocol):
    """What the registry needs of a PKCS#11 module (see `agent.tokens.pkcs11`)."""

    path: str

    def present_slots(self) -> Sequence[Pkcs11Slot]: ...

    def open_token(self, slot_id: int) -> Token: ...

    def reinitialize(self) -> None: ...


@dataclass
class _Entry:
    token: Token  # the route operations use (PIV when both exist: no middleware between)
    worker: TokenWorker
    reader: str | None = None
    serials: set[str] = field(default_factory=set)
    extra_routes: dict[tuple[str, int], RouteInfo] = field(default_factory=dict)

    def info(self) -> TokenInfo:
        base = self.token.info
        return replace(base, routes=base.routes + tuple(self.extra_routes.values()))


def _serial_matches(a: str, b: str) -> bool:
    """Serials of one token seen through two routes. PKCS#11 middleware shortens long
    ones to the 16 characters CK_TOKEN_INFO holds (OpenSC shows a PIV CHUID GUID's last 8
    bytes), so one being the other's end (or start) counts, from 8 characters up."""
    a, b = a.strip().lower(), b.strip().lower()
    short, long = sorted((a, b), key=len)
    return len(short) >= 8 and (long.endswith(short) or long.startswith(short))


class TokenRegistry:
    """The tokens reachable now. Use as `async with TokenRegistry(...) as registry:`."""

    def __init__(
        self,
        *,
        pcsc: bool = True,
        pkcs11_modules: Sequence[Pkcs11Source] = (),
        atr_profiles: AtrProfiles | None = None,
        pkcs11_poll_interval: float = 1.0,
        management_key: bytes = DEFAULT_MANAGEMENT_KEY,
    ) -> None:
        self._use_pcsc = pcsc
        self._modules = list(pkcs11_modules)
        self._profiles = atr_profiles or AtrProfiles.load()
        self._poll_interval = pkcs11_poll_interval
        self._management_key = management_key
        self._entries: dict[str, _Entry] = {}
        self._by_reader: dict[str, str] = {}
        self._p11_routes: dict[tuple[str, int], str] = {}  # (module, slot) -> token id
        self._subscribers: list[asyncio.Queue[TokenEvent]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._reader_generation: dict[str, int] = {}  # every reader seen, with a change count
        self._modules_on_pcsc: set[str] = set()  # modules whose slots are PC/SC readers
        self._monitor: object | None = None
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # Life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> TokenRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Discover what is present now, then keep watching."""
        self._loop = asyncio.get_running_loop()
        if self._use_pcsc:
            from agent.tokens.pcsc import ReaderMonitor

            monitor = ReaderMonitor(self._on_reader_thread,
                                    on_service_restored=self._on_service_restored_thread)
            self._monitor = monitor
            monitor.start()
            await asyncio.to_thread(monitor.scans.wait, 5.0)
            await self.settle()
        await self._scan_pkcs11()
        if self._modules:
            self._poller = asyncio.create_task(self._poll_pkcs11(), name="pkcs11-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._monitor is not None:
            from agent.tokens.pcsc import ReaderMonitor

            assert isinstance(self._monitor, ReaderMonitor)
            await asyncio.to_thread(self._monitor.stop)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        for token_id in list(self._entries):
            self._drop(token_id, emit=False)

    async def settle(self) -> None:
        """Wait until the token set reflects every reader change seen so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # Queries and calls ---------------------------------------------------------------

    def tokens(self) -> list[TokenInfo]:
        return [entry.info() for entry in self._entries.values()]

    def info(self, token_id: str) -> TokenInfo:
        return self._entry(token_id).info()

    def _entry(self, token_id: str) -> _Entry:
        entry = self._entries.get(token_id)
        if entry is None:
            raise TokenNotFound(token_id)
        return entry

    async def call(self, token_id: str, operation: Callable[[Token], T]) -> T:
        """Run `operation(token)` on the token's worker; callers queue, never overlap."""
        entry = self._entry(token_id)
        return await entry.worker.run(operation, entry.token)

    def subscribe(self) -> asyncio.Queue[TokenEvent]:
        queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[TokenEvent]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def _emit(self, kind: EventKind, token_id: str, info: TokenInfo | None) -> None:
        event = TokenEvent(kind, token_id, info)
        log.info("token %s %s", token_id, kind.value)
        for queue in self._subscribers:
            queue.put_nowait(event)

    # PC/SC -----------------------------------------------------------------------------

    def _on_reader_thread(self, state: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._reader_changed, state)

    def _on_service_restored_thread(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._service_restored)

    def _service_restored(self) -> None:
        """pcscd came back after going away. PKCS#11 modules that reach cards through it
        (OpenSC) keep their dead context and the cards they saw until re-initialised
        (seen with OpenSC 0.23): re-initialise those, then let a scan find what is there."""
        task = asyncio.create_task(self._reset_pcsc_modules())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _reset_pcsc_modules(self) -> None:
        for module in self._modules:
            if module.path not in self._modules_on_pcsc:
                continue
            for key, token_id in list(self._p11_routes.items()):
                if key[0] != module.path:
                    continue
                del self._p11_routes[key]
                entry = self._entries.get(token_id)
                if entry is not None and entry.extra_routes.pop(key, None) is None:
                    self._drop(token_id)
            try:
                await asyncio.to_thread(module.reinitialize)
            except TokenError as exc:
                log.warning("%s: cannot re-initialise after pcscd came back: %s",
                            module.path, exc)

    def _reader_changed(self, state: object) -> None:
        from agent.tokens.pcsc import ReaderState

        assert isinstance(state, ReaderState)
        generation = self._reader_generation.get(state.reader, 0) + 1
        self._reader_generation[state.reader] = generation
        token_id = self._by_reader.pop(state.reader, None)
        if token_id is not None:
            self._drop(token_id)
        if state.present:
            task = asyncio.create_task(self._attach_reader(state.reader, state.atr, generation))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _attach_reader(self, reader: str, atr: bytes, generation: int) -> None:
        profile = self._profiles.match(atr)
        if profile is not None and profile.profile == "pkcs11":
            log.info("%s: %s, left to the PKCS#11 modules", reader, profile.name)
            return
        from agent.tokens.pcsc import PcscConnection, PcscContext

        worker = TokenWorker(reader)

        def open_piv() -> PivToken:
            connection = PcscConnection(PcscContext(), reader)
            try:
                return PivToken(connection, reader=reader, atr=atr,
                                profile=profile.name if profile else None,
                                management_key=self._management_key)
            except BaseException:
                connection.close()
                connection.context.close()
                raise

        try:
            token = await worker.run(open_piv)
        except TokenError as exc:
            # Unknown ATR and no PIV application: a PKCS#11 module may know the card.
            log.info("%s: no PIV application (%s)", reader, exc)
            worker.shutdown()
            return
        if self._reader_generation.get(reader) != generation:
            worker.shutdown()  # the card left (or changed) while we were probing
            await asyncio.to_thread(token.close)
            return
        token_id = token.info.id
        if token_id in self._entries:  # same card seen again under another reader name
            self._drop(token_id)
        serials = {token.info.serial}
        if token.chuid_guid:
            serials.add(token.chuid_guid)
        entry = _Entry(token, worker, reader, serials)
        # A PKCS#11 route that already listed this card now folds into it.
        for key, other_id in list(self._p11_routes.items()):
            other = self._entries.get(other_id)
            if other is not None and other_id != token_id and self._same_token(entry, other):
                entry.extra_routes[key] = replace(other.token.info.routes[0], reader=reader)
                self._drop(other_id)
                self._p11_routes[key] = token_id
        self._entries[token_id] = entry
        self._by_reader[reader] = token_id
        self._emit(EventKind.INSERTED, token_id, entry.info())

    def _same_token(self, piv_entry: _Entry, p11_entry: _Entry) -> bool:
        info = p11_entry.token.info
        if piv_entry.reader and info.reader == piv_entry.reader:
            return True
        return any(_serial_matches(s, info.serial) for s in piv_entry.serials)

    def _drop(self, token_id: str, *, emit: bool = True) -> None:
        entry = self._entries.pop(token_id, None)
        if entry is None:
            return
        if entry.reader is not None and self._by_reader.get(entry.reader) == token_id:
            del self._by_reader[entry.reader]
        for key in [k for k, v in self._p11_routes.items() if v == token_id]:
            del self._p11_routes[key]
        entry.worker.retire(entry.token.close)
        if emit:
            self._emit(EventKind.REMOVED, token_id, None)

    # PKCS#11 --------------------------------------------------------------------------

    async def _poll_pkcs11(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self._scan_pkcs11()
            except Exception:  # keep polling; one bad module must not stop discovery
                log.exception("PKCS#11 scan failed")

    async def _scan_pkcs11(self) -> None:
        seen: set[tuple[str, int]] = set()
        for module in self._modules:
            try:
                slots = await asyncio.to_thread(module.present_slots)
            except TokenError as exc:
                log.warning("%s: cannot list slots: %s", module.path, exc)
                continue
            for slot in slots:
                key = (module.path, slot.slot_id)
                seen.add(key)
                if slot.description.strip() in self._reader_generation:
                    self._modules_on_pcsc.add(module.path)
                if key in self._p11_routes or self._pending:
                    continue  # known, or PC/SC still probing a card: decide next poll
                await self._attach_pkcs11(module, slot, key)
        for key in set(self._p11_routes) - seen:
            token_id = self._p11_routes.pop(key)
            entry = self._entries.get(token_id)
            if entry is None:
                continue
            if key in entry.extra_routes:
                del entry.extra_routes[key]
                self._emit(EventKind.CHANGED, token_id, entry.info())
            else:
                self._drop(token_id)

    async def _attach_pkcs11(self, module: Pkcs11Source, slot: Pkcs11Slot,
                             key: tuple[str, int]) -> None:
        for token_id, entry in self._entries.items():
            if entry.reader is not None and (
                    slot.description.strip() == entry.reader
                    or any(_serial_matches(s, slot.serial) for s in entry.serials)):
                entry.extra_routes[key] = RouteInfo(Route.PKCS11, reader=entry.reader,
                                                    module=module.path, slot=slot.slot_id)
                self._p11_routes[key] = token_id
                self._emit(EventKind.CHANGED, token_id, entry.info())
                return
        worker = TokenWorker(f"p11-{slot.slot_id}")
        try:
            token = await worker.run(module.open_token, slot.slot_id)
        except TokenError as exc:
            log.warning("%s slot %d: cannot open token: %s", module.path, slot.slot_id, exc)
            worker.shutdown()
            return
        token_id = token.info.id
        self._entries[token_id] = _Entry(token, worker, None, {token.info.serial})
        self._p11_routes[key] = token_id
        self._emit(EventKind.INSERTED, token_id, token.info)
