"""The liveness frames the identity service accepted, whatever the session (issue 17):
each frame's SHA-256 digest names the session that sent it, so that frames recorded in
one session cannot answer another's challenge. Kept in a `FrameStore`: the portal's
database (portal/store/identity_frames.py), which every portal process behind the load
balancer shares and a restart keeps; `MemoryFrames` for a service on its own.

A digest is kept for the policy's `frames_kept_days` (90 by default), long after its
session expired: a recording of an accepted answer is refused in a session opened later."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection
from typing import Protocol


class FrameStore(Protocol):
    """Frame digests -> the session that sent them, each until its expiry."""

    def foreign_identity_frames(self, session_id: str, digests: Collection[bytes]) -> bool:
        """Whether another session sent any of `digests`."""

    def claim_identity_frames(self, session_id: str, digests: Collection[bytes],
                              expires_at: dt.datetime) -> bool:
        """Record `digests` as `session_id`'s, all or none: False (nothing recorded)
        when any of them was recorded before, by any session (this one too: a frame
        answers one challenge), even in a race with this claim."""

    def expire_identity_frames(self, now: dt.datetime) -> None:
        """Forget the digests whose expiry has passed."""


class MemoryFrames:
    """A `FrameStore` in this process's memory: a restart, or another process, does not
    know what it saw."""

    def __init__(self) -> None:
        self._seen: dict[bytes, tuple[str, dt.datetime]] = {}
        self._lock = threading.Lock()

    def foreign_identity_frames(self, session_id: str, digests: Collection[bytes]) -> bool:
        with self._lock:
            return self._foreign(session_id, digests)

    def _foreign(self, session_id: str, digests: Collection[bytes]) -> bool:
        return any(self._seen.get(d, (session_id,))[0] != session_id for d in digests)

    def claim_identity_frames(self, session_id: str, digests: Collection[bytes],
                              expires_at: dt.datetime) -> bool:
        with self._lock:
            if any(d in self._seen for d in digests):
                return False
            for digest in digests:
                self._seen[digest] = (session_id, expires_at)
            return True

    def expire_identity_frames(self, now: dt.datetime) -> None:
        with self._lock:
            for digest in [d for d, (_, expires) in self._seen.items() if expires <= now]:
                del self._seen[digest]
