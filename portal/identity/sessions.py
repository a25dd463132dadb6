"""Where the identity service keeps its sessions (issue 17): a `SessionStore` holds
each session's state as JSON text with a version, so that the portal's database can
keep them across a restart and share them between the portal's processes
(portal/store/identity_sessions.py); `MemorySessions` is the store of a service on its
own (tests, a vendor's adapter).

The state is the service's session dataclass written field by field from its type
hints (`encode` / `decode`): dataclasses, enums, dates and times, bytes, tuples,
lists, sets and dicts of those. A field of another type is a programming error and
fails loudly when the session is first saved.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import threading
import types
import typing
from typing import Any, Protocol

from portal.identity.model import IdentityError


class SessionStore(Protocol):
    """Sessions' states by id, each with a version; `expire` forgets those whose expiry
    has passed."""

    def load_identity_session(self, session_id: str) -> tuple[str, int] | None:
        """The state and its version."""
        ...

    def save_identity_session(self, session_id: str, signer: str, expires_at: dt.datetime,
                              state: str, version: int | None) -> bool:
        """Write `state` if the session is still at `version` (None: a new session, not
        stored yet), moving it to the next version; False (nothing written) otherwise."""
        ...

    def delete_identity_session(self, session_id: str) -> None: ...

    def expire_identity_sessions(self, now: dt.datetime) -> None: ...


class MemorySessions:
    """A `SessionStore` in this process's memory: a restart forgets every session."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[dt.datetime, str, int]] = {}
        self._lock = threading.Lock()

    def load_identity_session(self, session_id: str) -> tuple[str, int] | None:
        with self._lock:
            found = self._states.get(session_id)
            return (found[1], found[2]) if found else None

    def save_identity_session(self, session_id: str, signer: str, expires_at: dt.datetime,
                              state: str, version: int | None) -> bool:
        with self._lock:
            found = self._states.get(session_id)
            if (found[2] if found else None) != version:
                return False
            self._states[session_id] = (expires_at, state, (version or 0) + 1)
            return True

    def delete_identity_session(self, session_id: str) -> None:
        with self._lock:
            self._states.pop(session_id, None)

    def expire_identity_sessions(self, now: dt.datetime) -> None:
        with self._lock:
            for key in [k for k, (expires, _, _) in self._states.items() if expires <= now]:
                del self._states[key]


class SessionChanged(IdentityError):
    """Another call (another portal process) wrote the session after this call read it:
    this call's changes are not written, and the caller sends the request again."""

    def __init__(self) -> None:
        super().__init__("IDENTITY_SESSION_CHANGED", "the identity session changed "
                         "meanwhile (another request on it): send the request again")


def encode(value: Any) -> Any:
    """A value of the session's types as JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return [[encode(k), encode(v)] for k, v in value.items()]
    if isinstance(value, set | frozenset):
        return sorted((encode(v) for v in value), key=json.dumps)
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"an identity session cannot hold a {type(value).__name__}")


def decode(kind: Any, data: Any) -> Any:
    """JSON data back into `kind` (a type hint as `typing.get_type_hints` gives it)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return decode(inner, data)
    if origin in (tuple, list, set, frozenset):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(decode(a, v) for a, v in zip(args, data, strict=True))
        items = [decode(args[0], v) for v in data]
        return origin(items)
    if origin is dict:
        return {decode(args[0], k): decode(args[1], v) for k, v in data}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: decode(hints[f.name], data[f.name])
                       for f in dataclasses.fields(kind) if f.name in data})
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(data)
    if kind is dt.datetime:
        return dt.datetime.fromisoformat(data)
    if kind is dt.date:
        return dt.date.fromisoformat(data)
    if kind is bytes:
        return base64.b64decode(data)
    if kind in (bool, int, float, str):
        return kind(data)
    if kind is Any:
        return data
    raise TypeError(f"an identity session cannot hold a {kind!r}")


def dumps(value: Any) -> str:
    return json.dumps(encode(value), separators=(",", ":"), sort_keys=True)


def loads(kind: Any, text: str) -> Any:
    return decode(kind, json.loads(text))


class Stored(Protocol):
    """What a stored session shows of itself."""

    @property
    def id(self) -> str: ...

    @property
    def signer(self) -> str: ...

    @property
    def expires(self) -> dt.datetime: ...


S = typing.TypeVar("S", bound=Stored)


@dataclasses.dataclass
class _Taken(typing.Generic[S]):
    """A session a call took, with the state and version it was read at (None: new)."""

    session: S
    state: str | None
    version: int | None


class SessionCache(typing.Generic[S]):
    """The lock that guards this process's calls on sessions, and the sessions a call
    takes (`get`, `put`) while holding it: each is read from the store when the call
    first takes it, never kept from an earlier call (another portal process may have
    written it since), and written back when the lock is released if its state changed,
    only if the store still holds the version read (a compare-and-set): a failure
    counted or a lock written by another process is never overwritten with a stale
    copy. A lost race raises `SessionChanged` and nothing of the call is written."""

    def __init__(self, store: SessionStore, kind: type[S]) -> None:
        self.store = store
        self._kind = kind
        self._taken: dict[str, _Taken[S]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> SessionCache[S]:
        self._lock.acquire()
        self._taken = {}
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for taken in self._taken.values():
                state = dumps(taken.session)
                if state != taken.state and not self.store.save_identity_session(
                        taken.session.id, taken.session.signer, taken.session.expires,
                        state, taken.version):
                    raise SessionChanged()
        finally:
            self._taken = {}
            self._lock.release()

    def get(self, session_id: str) -> S | None:
        """The session as the store holds it now (one read per call)."""
        taken = self._taken.get(session_id)
        if taken is None:
            found = self.store.load_identity_session(session_id)
            if found is None:
                return None
            state, version = found
            taken = self._taken[session_id] = _Taken(loads(self._kind, state), state,
                                                     version)
        return taken.session

    def put(self, session: S) -> None:
        """A new session, inserted when the lock is released."""
        self._taken[session.id] = _Taken(session, None, None)

    def touch(self, session: S) -> None:
        """Checks that `session` is the copy this call took: a copy from an earlier call
        may be stale, and its changes would be lost or overwrite another's."""
        taken = self._taken.get(session.id)
        if taken is None or taken.session is not session:
            raise RuntimeError("an identity session is changed only in the call that "
                               "read it")

    def drop(self, session_id: str) -> None:
        self._taken.pop(session_id, None)
        self.store.delete_identity_session(session_id)

    def expire(self, now: dt.datetime) -> None:
        self.store.expire_identity_sessions(now)
