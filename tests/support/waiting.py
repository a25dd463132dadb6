"""Waiting on a state, never on a fixed time.

A test that needs "the other side has reached X" polls X itself until a deadline. The
deadline only bounds how long a failure takes (a passing test returns as soon as X
holds), so it is generous: a loaded two-core machine may be many times slower than a
quiet one. A timeout fails loudly with what was awaited and the last value seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

DEADLINE = 60.0  # seconds; bounds failures only
POLL = 0.05  # seconds between looks at the state


class StateNotReached(AssertionError):
    """The awaited state did not hold before the deadline."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        super().__init__(f"waited {timeout:g} s for {what}; last seen: {last!r}")
        self.what = what
        self.last = last


def wait_until(check: Callable[[], T], what: str, timeout: float = DEADLINE,
               interval: float = POLL) -> T:
    """Call `check` until it returns a truthy value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StateNotReached(what, timeout, value)
        time.sleep(interval)


@overload
async def wait_until_async(check: Callable[[], Awaitable[T]], what: str,
                           timeout: float = ..., interval: float = ...) -> T: ...


@overload
async def wait_until_async(check: Callable[[], T], what: str,
                           timeout: float = ..., interval: float = ...) -> T: ...


async def wait_until_async(check: Callable[[], Any], what: str,
                           timeout: float = DEADLINE, interval: float = POLL) -> Any:
    """`wait_until` for a coroutine: `check` may be async; the loop keeps running."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if time.monotonic() > deadline:
            raise StateNotReached(what, timeout, value)
        await asyncio.sleep(interval)
