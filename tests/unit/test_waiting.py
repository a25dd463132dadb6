"""tests/support/waiting.py: a wait returns the state once it holds and otherwise fails
naming what it waited for."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.waiting import StateNotReached, wait_until, wait_until_async


def test_returns_the_state_once_it_holds() -> None:
    seen = iter([0, [], [1]])
    assert wait_until(lambda: next(seen), "a non-empty list", interval=0) == [1]


def test_a_state_that_never_holds_names_what_was_awaited() -> None:
    with pytest.raises(StateNotReached, match=r"waited 0\.01 s for the card; last seen: 0"):
        wait_until(lambda: 0, "the card", timeout=0.01, interval=0)


def test_async_checks_may_be_coroutines_or_plain() -> None:
    async def main() -> None:
        calls = []

        async def grows() -> int:
            calls.append(1)
            return len(calls) // 3

        assert await wait_until_async(grows, "three looks", interval=0) == 1
        assert await wait_until_async(lambda: "plain", "a plain value") == "plain"
        with pytest.raises(StateNotReached, match="never"):
            await wait_until_async(lambda: None, "never", timeout=0.01, interval=0)

    asyncio.run(main())
