"""A webhook receiver on loopback for tests (aiohttp): it answers 500 to its first
`failures` requests, then 200, keeps every request and checks their signatures."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from portal.webhooks import SIGNATURE_HEADER, verify
from tests.support.ports import free_port

EVENTS = ["viewed", "accepted", "signed", "refused", "completed", "expired", "cancelled"]


@dataclass
class Receiver:
    """Answers 500 to the first `failures` requests, then 200; keeps every request."""

    failures: int
    port: int = field(default_factory=free_port)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500, text="receiver down for maintenance")
        return web.Response(text="ok")

    def events(self, secret: str) -> list[dict[str, Any]]:
        """The bodies of the 2xx-answered requests, each signature checked first."""
        bodies = []
        for headers, body in self.received:
            assert verify(secret, headers[SIGNATURE_HEADER], body, now=time.time()), headers
            bodies.append(json.loads(body))
        return bodies


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        yield f"http://127.0.0.1:{receiver.port}/hook"
    finally:
        await runner.cleanup()
