"""One worker thread per token: calls queue, card I/O never blocks the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class TokenWorker:
    """A single-thread executor: operations on one token run one after another, so the
    APDUs (or PKCS#11 calls) of two operations can never interleave."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"token-{name}")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def submit_and_wait(self, fn: Callable[[], T]) -> T:
        """Blocking variant for threads that are not the event loop."""
        return self._executor.submit(fn).result()

    def retire(self, last: Callable[[], object]) -> None:
        """Run `last` after whatever is queued, then stop; does not wait."""
        self._executor.submit(last)
        self._executor.shutdown(wait=False)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
