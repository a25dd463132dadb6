"""Slow and greedy HTTP clients against our aiohttp servers (the portal and the agent):
every phase of a connection has a deadline, and connections are capped per client
address and in all, under the process's descriptor limit (SECURITY.md #40).

aiohttp alone waits without limit for the body a handler reads, and for a request's
headers until its keep-alive timeout: a few thousand connections that send a partial
header or body ("slowloris") hold the server's descriptors for minutes. The model is
Apache httpd's mod_reqtimeout (`RequestReadTimeout header=20-40,MinRate=500
body=20,MinRate=500`): a phase may last its initial time, extended by one second for
every `min_rate` bytes the client sends.

A connection is, in turn:

- **headers**: from the connection's start (or the first byte after an idle spell) until
  the request handler runs: `header_timeout` s, extended by the bytes received, never past
  `header_max` s. Nothing sent at all counts here too.
- **body**: from the handler's start until the body has arrived whole: `body_timeout` s,
  extended by the bytes received (a large upload at a sane rate always fits), never past
  `body_max` s when one is set (mod_reqtimeout's `body=20-40`).
- **handling**: the application's own time (a WebSocket lives here): no limit here.
- **idle**: after the handler returned, until the next request's first byte:
  `idle_timeout` s; while our answer is still leaving (the write buffer shrinks between
  two looks) the deadline moves on.

Past its deadline a connection is closed (a partial request gets `408` first). Over a
cap (per client address, in all), the longest-waiting connection of that scope that is
not being handled makes way for the new one, so a flood of slow sockets never keeps a
real request out; when every one is being handled, the new one gets `503`. A server
that only loopback clients reach (the agent) sees one address for all: it sets
`max_per_address` to `max_connections`. Both caps are lowered to fit under the soft
RLIMIT_NOFILE, with room for the descriptors a server needs besides its connections:
past it `accept` fails (EMFILE), the loop stops accepting for a while, and no
connection would make way.

Use: `serve(app, host=..., port=..., limits=...)`, or `HttpGuard(limits)` and
`GuardedSite(runner, guard, host, port)` / `GuardedSite(runner, guard, sock=sock)` in place
of aiohttp's `TCPSite` / `SockSite` (several sites may share one guard and one runner).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import resource
import signal
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from aiohttp import web
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)

_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
            b"Content-Length: 0\r\n\r\n")
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n"
         b"Content-Length: 0\r\n\r\n")
_CLOSE_GRACE = 5.0  # a close() that cannot flush within this becomes an abort()
_RESERVED_DESCRIPTORS = 64  # listening sockets, database files, PC/SC, PKCS#11, logs


@dataclass(frozen=True)
class GuardLimits:
    """Seconds, bytes per second and connection counts (mod_reqtimeout's defaults)."""

    header_timeout: float = 20.0
    header_max: float = 40.0
    body_timeout: float = 20.0
    body_max: float | None = None  # None: a body at `min_rate` may take as long as it needs
    min_rate: float = 500.0
    idle_timeout: float = 30.0
    max_per_address: int = 64
    max_connections: int = 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout", "header_max", "body_timeout", "min_rate",
                     "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: a positive number")
        if self.header_max < self.header_timeout:
            raise ValueError("header_max: at least header_timeout")
        if self.body_max is not None and self.body_max < self.body_timeout:
            raise ValueError("body_max: at least body_timeout")
        if self.max_per_address < 1 or self.max_connections < self.max_per_address:
            raise ValueError("max_per_address: 1 to max_connections")


def within_descriptors(limits: GuardLimits) -> GuardLimits:
    """`limits` with both caps lowered, if need be, under the soft RLIMIT_NOFILE less
    the descriptors a server holds besides its connections (getrlimit(2))."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits
    room = max(8, soft - _RESERVED_DESCRIPTORS)
    if limits.max_connections <= room:
        return limits
    log.warning("HTTP: at most %d connections (not %d): the descriptor limit is %d",
                room, limits.max_connections, soft)
    return replace(limits, max_connections=room,
                   max_per_address=min(limits.max_per_address, room))


class Phase(enum.Enum):
    HEADERS = "headers"
    BODY = "body"
    HANDLING = "handling"
    IDLE = "idle"


class HttpGuard:
    """The per-connection deadlines and the connection caps of one server."""

    def __init__(self, limits: GuardLimits | None = None) -> None:
        self.limits = within_descriptors(limits or GuardLimits())
        self._open: dict[asyncio.BaseTransport, _GuardedConnection] = {}
        self._per_address: Counter[str] = Counter()
        self._wrapped: set[int] = set()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The factory to give `loop.create_server` instead of aiohttp's `server`."""
        if id(server) not in self._wrapped:  # one wrap per server, however many sites
            self._wrapped.add(id(server))
            inner = server.request_handler

            async def handle(request: BaseRequest) -> web.StreamResponse:
                connection = self._open.get(request.transport) if request.transport else None
                if connection is None:
                    return await inner(request)
                connection.request_started(request)
                try:
                    return await inner(request)
                finally:
                    connection.request_finished()

            server.request_handler = handle
        return lambda: _GuardedConnection(self, server())

    def _admit(self, address: str) -> bool:
        """Room for one more connection from `address`: over a cap, the longest-waiting
        connection in that scope that is not being handled makes way (a flood of slow
        sockets never keeps a real request out); if all are being handled, no."""
        for scope in (address, None):
            full = (self._per_address[address] >= self.limits.max_per_address
                    if scope else len(self._open) >= self.limits.max_connections)
            if not full:
                continue
            waiting = [c for c in self._open.values() if c.waiting
                       and (scope is None or c.address == scope)]
            if not waiting:
                return False
            min(waiting, key=lambda c: c.waiting_since).evict()
        self._per_address[address] += 1
        return True

    def _register(self, transport: asyncio.BaseTransport, connection: _GuardedConnection
                  ) -> None:
        self._open[transport] = connection

    def _release(self, transport: asyncio.BaseTransport, address: str) -> None:
        if self._open.pop(transport, None) is None:
            return
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the deadlines of its phases."""

    def __init__(self, guard: HttpGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._limits = guard.limits
        self._inner = inner
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self.address = ""
        self._admitted = False
        self._phase = Phase.HEADERS
        self._since = 0.0
        self._received = 0
        self._request: BaseRequest | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._unsent = 0

    # asyncio.Protocol, forwarded to aiohttp ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        if not self._guard._admit(self.address):
            log.warning("HTTP: connection from %s refused: too many open", self.address)
            transport.write(_BUSY)
            self._close(transport)
            return
        self._admitted = True
        self._guard._register(transport, self)
        self._inner.connection_made(transport)
        self._enter(Phase.HEADERS)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._phase is Phase.IDLE:
            self._enter(Phase.HEADERS)
        self._received += len(data)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if not self._admitted:
            return
        self._admitted = False
        if self._transport is not None:
            self._guard._release(self._transport, self.address)
        self._request = None
        self._inner.connection_lost(exc)

    # Seen by the guard ---------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Waiting on the client (headers, body, next request), not handling."""
        return self._phase is not Phase.HANDLING

    @property
    def waiting_since(self) -> float:
        return self._since

    def evict(self) -> None:
        """Make way for a new connection: out of the counts now, closed at once."""
        log.info("HTTP: closing a waiting connection from %s (%s): the cap is reached",
                 self.address, self._phase.value)
        self._cancel()
        if self._transport is not None:
            self._guard._release(self._transport, self.address)
            self._transport.abort()

    # Phases, told by the request handler wrapper -------------------------------------

    def request_started(self, request: BaseRequest) -> None:
        if request.body_exists and not request.content.is_eof():
            self._request = request
            self._enter(Phase.BODY)
        else:
            self._enter(Phase.HANDLING)

    def request_finished(self) -> None:
        self._request = None
        if self._admitted:
            self._enter(Phase.IDLE)

    # Deadlines -------------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        self._phase = phase
        self._since = self._loop.time()
        self._received = 0
        self._unsent = 0
        self._arm()

    def _deadline(self) -> float | None:
        limits, since = self._limits, self._since
        earned = self._received / limits.min_rate
        if self._phase is Phase.HEADERS:
            return since + min(limits.header_timeout + earned, limits.header_max)
        if self._phase is Phase.BODY:
            body = limits.body_timeout + earned
            return since + (body if limits.body_max is None else min(body, limits.body_max))
        if self._phase is Phase.IDLE:
            return since + limits.idle_timeout
        return None

    def _arm(self) -> None:
        self._cancel()
        deadline = self._deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._check)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        transport = self._transport
        if not self._admitted or transport is None:
            return
        if self._phase is Phase.BODY and (self._request is None
                                          or self._request.content.is_eof()):
            self._phase, self._request = Phase.HANDLING, None
            return
        if self._phase is Phase.IDLE:
            unsent = transport.get_write_buffer_size()
            if unsent and unsent != self._unsent:  # our answer is still leaving
                self._since, self._unsent = self._loop.time(), unsent
                self._arm()
                return
        deadline = self._deadline()
        if deadline is not None and deadline > self._loop.time():  # bytes bought time
            self._timer = self._loop.call_at(deadline, self._check)
            return
        log.info("HTTP: closing a connection from %s: %s phase past its deadline",
                 self.address, self._phase.value)
        if self._phase is Phase.HEADERS and self._received:
            transport.write(_TIMEOUT)
        self._close(transport)

    def _close(self, transport: asyncio.Transport) -> None:
        if transport.get_write_buffer_size():
            transport.abort()
            return
        transport.close()
        # close() waits for unsent bytes without limit: a reader that never reads stays
        self._loop.call_later(_CLOSE_GRACE, transport.abort)


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite / SockSite, with the guard in front of every connection."""

    __slots__ = ("_bound_port", "_guard", "_host", "_port", "_sock")

    def __init__(self, runner: web.BaseRunner, guard: HttpGuard, host: str | None = None,
                 port: int = 0, *, sock: socket.socket | None = None) -> None:
        super().__init__(runner)
        self._guard = guard
        self._host, self._port, self._sock = host, port, sock
        self._bound_port = port

    @property
    def name(self) -> str:
        host = self._host or "0.0.0.0"  # noqa: S104 (only a label)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        return self._bound_port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self._guard.protocol_factory(server)
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock)
        else:
            self._server = await loop.create_server(factory, self._host, self._port,
                                                    reuse_address=True)
        sockets = self._server.sockets
        if sockets:
            self._bound_port = int(sockets[0].getsockname()[1])


async def serve(app: web.Application, *, host: str, port: int,
                limits: GuardLimits | None = None,
                ready: Callable[[GuardedSite], None] | None = None,
                shutdown_timeout: float = 10.0) -> None:
    """Serve `app` behind an `HttpGuard` until SIGTERM or SIGINT."""
    guard = HttpGuard(limits)
    runner = web.AppRunner(app, keepalive_timeout=guard.limits.idle_timeout,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = GuardedSite(runner, guard, host, port)
        await site.start()
        if ready is not None:
            ready(site)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
    finally:
        await runner.cleanup()
