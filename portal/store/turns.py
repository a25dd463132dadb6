"""The signing order as turns: each signer has one; signers sharing a turn sign in
parallel, and a turn starts once every signer of the turns before it has signed.
Parallel is one turn for all, sequential one turn per signer, groups one turn per group.
A signer is invited only when their turn comes."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from portal.store.records import Signer, SignerStatus


class SigningOrder(StrEnum):
    PARALLEL = "parallel"
    SEQUENTIAL = "sequential"
    GROUPS = "groups"


def turns_of(order: SigningOrder, count: int, groups: Sequence[int | None] = ()) -> list[int]:
    """Each signer's turn: 0 for all (parallel), the position (sequential), or the group
    number given for each signer (groups: turns in ascending group number)."""
    if order is SigningOrder.PARALLEL:
        return [0] * count
    if order is SigningOrder.SEQUENTIAL:
        return list(range(count))
    if len(groups) != count or any(g is None for g in groups):
        raise ValueError("every signer needs a group")
    return [int(g) for g in groups if g is not None]


def due(signers: Sequence[Signer]) -> list[Signer]:
    """The waiting signers whose turn has come: every signer of an earlier turn signed."""
    waiting = [s for s in signers if s.status is SignerStatus.WAITING]
    if not waiting:
        return []
    first = min(s.turn for s in waiting)
    if any(s.turn < first and s.status is not SignerStatus.SIGNED for s in signers):
        return []
    return [s for s in waiting if s.turn == first]
