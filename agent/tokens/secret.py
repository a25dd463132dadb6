"""PIN buffers: a PIN the agent holds lives in a bytearray that is zeroed as soon as
its last use is over (the Web eID habit), never in an immutable copy kept longer."""

from __future__ import annotations


def wipe(*buffers: bytearray) -> None:
    """Zero each buffer in place."""
    for buffer in buffers:
        buffer[:] = bytes(len(buffer))
