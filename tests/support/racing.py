"""Races between threads, as several processes on one database or state file race.

Each contender runs on its own thread and all are released at once by a barrier, so
the critical sections overlap as much as the machine allows. A thread's exception is
not lost in the thread's own traceback: the race raises it once every thread is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from tests.support.waiting import DEADLINE

T = TypeVar("T")
R = TypeVar("R")


def race(contend: Callable[[T], R], contenders: Iterable[T]) -> list[R]:
    """`contend(c)` for every contender at once, each on its own thread; the results in
    the contenders' order, or the first exception a thread raised."""
    entrants = list(contenders)
    barrier = threading.Barrier(len(entrants))
    results: dict[int, R] = {}
    failures: list[BaseException] = []

    def run(index: int, contender: T) -> None:
        barrier.wait()
        try:
            results[index] = contend(contender)
        except BaseException as exc:  # raised by race() once every thread is done
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i, c), name=f"contender-{i}")
               for i, c in enumerate(entrants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(t.is_alive() for t in threads), f"a contender ran past {DEADLINE:g} s"
    if failures:
        raise failures[0]
    return [results[i] for i in range(len(entrants))]
