"""JSON from a page or a program, parsed within bounds (SECURITY #46): nesting deeper
than MAX_DEPTH, NaN/Infinity, invalid UTF-8 or text that is not JSON is a typed
refusal (`JsonRefused`), never an exception that becomes a 500. The HTTP routes
(`/v1/pair`, the CSC facade, the approval page) read their bodies through
`read_json`; the WebSocket's JSON-RPC framing applies the same rules.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

MAX_DEPTH = 16  # as agent.protocol.jsonrpc: no request of ours nests deeper
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]')  # a whole string, or a bracket


class JsonRefused(ValueError):
    """The text is not JSON this agent reads; `reason` says why, for the answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 §6 has no NaN or Infinity


def _nesting(text: str, limit: int) -> int:
    """The deepest bracket nesting outside strings, stopping once past `limit`: checked
    before json.loads, whose recursion a 50,000-deep array would exhaust."""
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `data` (RFC 8259), or JsonRefused."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise JsonRefused("the body is not UTF-8") from None
    if _nesting(text, max_depth) > max_depth:
        raise JsonRefused("nested too deeply")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise JsonRefused("not JSON") from None


async def read_json(request: web.Request, *, max_depth: int = MAX_DEPTH) -> Any:
    """The request's body as JSON (at most the app's client_max_size), or JsonRefused."""
    return parse_json(await request.read(), max_depth=max_depth)
