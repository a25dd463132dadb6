"""Each origin's open WebSockets: a cap per origin beside the global one (SECURITY #40),
and the end of everything an origin holds once it is no longer allowed (SECURITY #37).

An origin stops being allowed when its pairing is revoked (`qsign agent origins
--revoke`, another process writing the state database) or when a policy reload drops
it from `allowed_origins`. The agent notices on the origin's next message (each is
checked before it is handled) or within SWEEP_SECONDS (a sweep over the origins with
open sockets), whichever comes first; then it closes every socket of that origin
(1008, policy violation) and voids its unspent SADs and replays
(`agent.revocation.void_origin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web

from agent.journal import SignatureJournal
from agent.policy import SadIssuer
from agent.protocol.gate import GATE
from agent.revocation import void_origin

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0


@dataclass
class OriginSockets:
    """Open WebSockets by origin, and what revoking an origin needs."""

    journal: SignatureJournal
    sads: SadIssuer
    by_origin: dict[str, set[web.WebSocketResponse]] = field(default_factory=dict)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    def count(self, origin: str) -> int:
        return len(self.by_origin.get(origin, ()))

    def add(self, origin: str, ws: web.WebSocketResponse) -> None:
        self.by_origin.setdefault(origin, set()).add(ws)

    def discard(self, origin: str, ws: web.WebSocketResponse) -> None:
        sockets = self.by_origin.get(origin)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self.by_origin[origin]

    async def revoke(self, origin: str) -> None:
        """Close `origin`'s sockets now and void what it was granted."""
        sockets = self.by_origin.pop(origin, set())
        for ws in sockets:
            # Not awaited here: a close waits for the peer's answer, and one peer
            # that never answers must not hold up the others or the sweep.
            task = asyncio.create_task(close_revoked(ws), name="close-revoked")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        voided = await asyncio.to_thread(void_origin, self.journal, self.sads, origin)
        log.warning("origin %s is no longer allowed: %d socket(s) closed, %d SAD(s) voided",
                    origin, len(sockets), voided)


async def close_revoked(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"origin no longer allowed")


ORIGIN_SOCKETS = web.AppKey("origin_sockets", OriginSockets)


async def sweep_once(app: web.Application) -> None:
    """Revoke each origin with open sockets that is no longer allowed."""

    gate, sockets = app[GATE], app[ORIGIN_SOCKETS]
    for origin in list(sockets.by_origin):
        if not await asyncio.to_thread(gate.origin_allowed, origin):
            await sockets.revoke(origin)


async def revocation_sweep(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the periodic sweep, for as long as the app runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await sweep_once(app)
            except Exception:  # the next sweep tries again; the cause goes to the log
                log.exception("revocation sweep failed")

    task = asyncio.create_task(loop(), name="revocation-sweep")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
