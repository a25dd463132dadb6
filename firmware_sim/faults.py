"""Fault injection: the ways a real card fails that tests must survive.

A *tear* is power lost in the middle of an EEPROM write. Here the process
dies (``os._exit``) at a named point of a state write; the card must come back
with its old, consistent state. Latency and removal live on the transport
(see ``vpcd.VpcdLink``).
"""

from __future__ import annotations

import os
from enum import StrEnum

TEAR_ENV = "QSIGN_SIM_TEAR"
TEAR_EXIT_CODE = 86


class TearPoint(StrEnum):
    """Named points inside one atomic state write (see ``state.CardStore``)."""

    TEMP_PARTIAL = "temp-partial"  # half of the new image is in the temp file
    TEMP_WRITTEN = "temp-written"  # temp file complete and fsynced, not yet renamed
    RENAMED = "renamed"  # new image renamed into place, directory not yet fsynced


class TearPlan:
    """Die at `point` on the `nth` state write (1-based) of this process."""

    def __init__(self, point: TearPoint, nth: int = 1) -> None:
        if nth < 1:
            raise ValueError("nth must be >= 1")
        self.point = point
        self.nth = nth
        self._writes = 0

    @classmethod
    def from_env(cls) -> TearPlan | None:
        """Read ``QSIGN_SIM_TEAR=point[:nth]``; None when unset."""
        spec = os.environ.get(TEAR_ENV, "").strip()
        if not spec:
            return None
        point, _, nth = spec.partition(":")
        try:
            return cls(TearPoint(point), int(nth) if nth else 1)
        except ValueError as exc:
            raise ValueError(f"{TEAR_ENV}={spec!r}: {exc}") from None

    def begin_write(self) -> None:
        self._writes += 1

    def reached(self, point: TearPoint) -> None:
        if point is self.point and self._writes == self.nth:
            os._exit(TEAR_EXIT_CODE)
