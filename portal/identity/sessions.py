"""Where the identity service keeps its sessions (issue 17): a `SessionStore` holds
each session's state as JSON text, so that the portal's database can keep them across
a restart (portal/store/identity_sessions.py); `MemorySessions` is the store of a
service on its own (tests, a vendor's adapter).

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


class SessionStore(Protocol):
    """Sessions' states by id; `expire` forgets those whose expiry has passed."""

    def load_identity_session(self, session_id: str) -> str | None: ...

    def save_identity_session(self, session_id: str, signer: str, expires_at: dt.datetime,
                              state: str) -> None: ...

    def delete_identity_session(self, session_id: str) -> None: ...

    def expire_identity_sessions(self, now: dt.datetime) -> None: ...


class MemorySessions:
    """A `SessionStore` in this process's memory: a restart forgets every session."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[dt.datetime, str]] = {}
        self._lock = threading.Lock()

    def load_identity_session(self, session_id: str) -> str | None:
        with self._lock:
            found = self._states.get(session_id)
            return found[1] if found else None

    def save_identity_session(self, session_id: str, signer: str, expires_at: dt.datetime,
                              state: str) -> None:
        with self._lock:
            self._states[session_id] = (expires_at, state)

    def delete_identity_session(self, session_id: str) -> None:
        with self._lock:
            self._states.pop(session_id, None)

    def expire_identity_sessions(self, now: dt.datetime) -> None:
        with self._lock:
            for key in [k for k, (expires, _) in self._states.items() if expires <= now]:
                del self._states[key]


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


class SessionCache(typing.Generic[S]):
    """The sessions in use, in memory, and the lock that guards them: every session
    taken (`get`, `put`, `touch`) while the lock is held is written back to the store
    when it is released, if its state changed, so that whatever a call did to a
    session (a failure counted, a challenge issued) outlives the process. A session
    missing from memory (after a restart) is read from the store."""

    def __init__(self, store: SessionStore, kind: type[S]) -> None:
        self.store = store
        self._kind = kind
        self._live: dict[str, S] = {}
        self._saved: dict[str, str] = {}
        self._touched: dict[str, S] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> SessionCache[S]:
        self._lock.acquire()
        self._touched = {}
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for session in self._touched.values():
                state = dumps(session)
                if self._saved.get(session.id) != state:
                    self.store.save_identity_session(session.id, session.signer,
                                                     session.expires, state)
                    self._saved[session.id] = state
        finally:
            self._touched = {}
            self._lock.release()

    def get(self, session_id: str) -> S | None:
        session = self._live.get(session_id)
        if session is None:
            state = self.store.load_identity_session(session_id)
            if state is None:
                return None
            session = loads(self._kind, state)
            self._live[session_id] = session
            self._saved[session_id] = state
        self._touched[session_id] = session
        return session

    def put(self, session: S) -> None:
        self._live[session.id] = session
        self._touched[session.id] = session

    def touch(self, session: S) -> None:
        self._touched[session.id] = session

    def drop(self, session_id: str) -> None:
        for held in (self._live, self._saved, self._touched):
            held.pop(session_id, None)
        self.store.delete_identity_session(session_id)

    def expire(self, now: dt.datetime) -> None:
        for key in [k for k, s in self._live.items() if s.expires <= now]:
            for held in (self._live, self._saved, self._touched):
                held.pop(key, None)
        self.store.expire_identity_sessions(now)
