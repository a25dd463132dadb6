"""An aiohttp application served on loopback from an event loop in a thread of the test
process: a real socket for clients in other loops (or processes), state the test can
reach directly (its clock, its store). One module's tests share one such server."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from aiohttp import web


@dataclass
class ThreadedApp:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    runner: web.AppRunner

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def serve_in_thread(app: web.Application, port: int, name: str) -> ThreadedApp:
    """`app` on 127.0.0.1:`port` once this returns; `stop()` closes it."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError(f"{name} did not start")
    return ThreadedApp(loop, thread, runner)
