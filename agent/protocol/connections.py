"""Bounds on the agent's TCP connections, so that slow or silent clients cannot hold
its descriptors and starve its routes (SECURITY #40; the "Slowloris" attack).

aiohttp reads a request's head with no deadline of its own (its keep-alive timer
covers idle connections in some versions only), and a handler reads the body with
none. So each accepted connection is wrapped (`GuardedProtocol`, between the
transport and aiohttp's request handler) and lives through phases:

- HEAD: from the connection's start, or from the first byte after an idle pause,
  until a whole request head is read: at most `header_timeout` seconds;
- IDLE: after an answer, waiting for the next keep-alive request: `idle_timeout`;
- BODY: the head is read, the body is being read (`bounded_requests` middleware,
  which answers 408 past `body_timeout`);
- HANDLING: a handler runs (a WebSocket stays here for its life; the WebSocket
  caps, heartbeat and origin checks bound those).

A connection past its deadline is aborted. At most `max_connections` are open: a new
one past the cap takes the place of the longest-waiting connection that is not being
handled (HEAD, IDLE or BODY), so a flood of slow sockets never keeps `/v1/health` or
a page out; if every connection is being handled, the new one gets a 503 and is
closed. The agent listens on loopback only: every client shares one address, so
this cap is also the per-address cap. `nofile_cap` keeps the cap below the process's
descriptor limit.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import resource
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

_RESERVED_DESCRIPTORS = 64  # listening sockets, SQLite files, PC/SC, PKCS#11, logs
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
         b"Content-Type: application/json\r\nContent-Length: 24\r\n\r\n"
         b'{"error":"RATE_LIMITED"}')


class Phase(enum.Enum):
    HEAD = "head"
    IDLE = "idle"
    BODY = "body"
    HANDLING = "handling"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    idle_timeout: float


def nofile_cap(configured: int) -> int:
    """`configured`, lowered to fit under RLIMIT_NOFILE's soft limit with room for the
    descriptors the agent needs besides its connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    room = max(8, soft - _RESERVED_DESCRIPTORS)
    if configured > room:
        log.warning("max_tcp_connections %d lowered to %d: the descriptor limit is %d",
                    configured, room, soft)
        return room
    return configured


class GuardedProtocol(asyncio.Protocol):
    """One connection: forwards to aiohttp's protocol and keeps the phase's deadline."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self.transport: asyncio.Transport | None = None
        self.phase = Phase.HEAD
        self.since = 0.0  # loop time the current phase began
        self._timer: asyncio.TimerHandle | None = None
        self._admitted = False

    # asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._guard.admit(self):
            transport.write(_BUSY)
            transport.close()
            return
        self._admitted = True
        self._inner.connection_made(transport)
        self.enter(Phase.HEAD)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self.phase is Phase.IDLE:
            self.enter(Phase.HEAD)  # a new request begins: its head has its own deadline
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
        self._cancel_timer()
        self._guard.forget(self)
        if self._admitted:
            self._inner.connection_lost(exc)

    # Phases ---------------------------------------------------------------------------

    def enter(self, phase: Phase) -> None:
        self._cancel_timer()
        self.phase = phase
        loop = asyncio.get_running_loop()
        self.since = loop.time()
        timeout = {Phase.HEAD: self._guard.limits.header_timeout,
                   Phase.IDLE: self._guard.limits.idle_timeout}.get(phase)
        if timeout is not None:
            self._timer = loop.call_later(timeout, self._expired)

    @property
    def evictable(self) -> bool:
        return self._admitted and self.phase is not Phase.HANDLING

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _expired(self) -> None:
        self._timer = None
        log.info("closed a connection that sent no complete request in time (%s)",
                 self.phase.value)
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ConnectionGuard:
    """The open connections of one agent, their cap and their deadlines."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._open: dict[asyncio.BaseTransport, GuardedProtocol] = {}

    @property
    def open(self) -> int:
        return len(self._open)

    def protocol_factory(self, inner: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` takes: aiohttp's protocol factory, guarded."""
        return lambda: GuardedProtocol(self, inner())

    def admit(self, connection: GuardedProtocol) -> bool:
        if len(self._open) >= self.limits.max_connections:
            waiting = [c for c in self._open.values() if c.evictable]
            if not waiting:
                log.warning("refused a connection: %d are open and busy", len(self._open))
                return False
            oldest = min(waiting, key=lambda c: c.since)
            self.forget(oldest)
            oldest.abort()
        assert connection.transport is not None
        self._open[connection.transport] = connection
        return True

    def forget(self, connection: GuardedProtocol) -> None:
        if connection.transport is not None:
            self._open.pop(connection.transport, None)

    def lookup(self, transport: asyncio.BaseTransport | None) -> GuardedProtocol | None:
        return None if transport is None else self._open.get(transport)


GUARD = web.AppKey("connection_guard", ConnectionGuard)
BODY_TIMEOUT = web.AppKey("body_timeout", float)


@web.middleware
async def bounded_requests(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Read each request's body within the body timeout before its handler runs (408
    and the connection closed past it), and tell the guard, when there is one (not
    under a test server), which phase the connection is in. Handlers then find the
    body read: `request.read()`/`json()` answer it, `can_read_body` is False (test
    `body_exists` instead)."""
    guard = request.app.get(GUARD)
    connection = guard.lookup(request.transport) if guard is not None else None
    if connection is not None:
        connection.enter(Phase.BODY)
    try:
        if request.body_exists:
            try:
                async with asyncio.timeout(request.app[BODY_TIMEOUT]):
                    await request.read()  # kept by aiohttp for the handler's json()
            except TimeoutError:
                log.info("closed a connection whose request body came too slowly")
                answer = web.json_response(
                    {"error": "REQUEST_TIMEOUT", "message": "the body came too slowly"},
                    status=408)
                answer.force_close()
                return answer
            except ConnectionError:  # the client left, or gave its place to a new one
                return web.Response(status=400)  # written nowhere: nothing to log
        if connection is not None:
            connection.enter(Phase.HANDLING)
        return await handler(request)
    finally:
        if connection is not None and connection.transport is not None \
                and not connection.transport.is_closing():
            connection.enter(Phase.IDLE)


async def listen(guard: ConnectionGuard, server: Callable[[], Any], *,
                 host: str | None = None, port: int = 0,
                 sock: socket.socket | None = None) -> asyncio.Server:
    """Listen on `host`:`port` (or on a socket systemd passed) with aiohttp's `server`
    (runner.server) behind the guard."""
    loop = asyncio.get_running_loop()
    factory = guard.protocol_factory(server)
    if sock is not None:
        return await loop.create_server(factory, sock=sock)
    return await loop.create_server(factory, host, port)
