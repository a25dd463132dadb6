"""JSON text parsed within bounds: the one parser behind the agent's and the portal's
request bodies and the agent's WebSocket messages (SECURITY.md #46; RFC 8259).

`json.loads` recurses once per nesting level, so a 50,000-deep array exhausts the stack
(RecursionError, then a 500). The nesting is therefore measured first, by a scan that
skips strings whole, uses no recursion and gives up once past the bound. NaN and
Infinity, which `json.loads` accepts, are refused (RFC 8259 §6), as is text that is not
UTF-8 (§8.1). Every refusal is a `JsonRefused` whose `why` names the rule broken; each
server maps it onto its own wire (agent/protocol/jsonbody.py and jsonrpc.py: JSON-RPC
errors; portal/json_body.py: the portal's typed 400).
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]')  # a whole string, or a bracket


class Why(enum.Enum):
    """Which rule the text broke."""

    NOT_UTF8 = "not UTF-8"  # RFC 8259 §8.1
    TOO_DEEP = "nested too deeply"
    NOT_JSON = "not JSON"  # RFC 8259 §2 (NaN and Infinity included, §6)


class JsonRefused(ValueError):
    """The text is not JSON within the bounds; `why` says which rule, `reason` in words."""

    def __init__(self, why: Why, reason: str | None = None) -> None:
        self.why = why
        self.reason = reason or why.value
        super().__init__(self.reason)


def nesting(text: str, limit: int) -> int:
    """The deepest bracket nesting outside strings, counted without recursion and given
    up once past `limit` (the regular expression skips each string whole)."""
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 §6: no NaN or Infinity


def parse_bounded(data: str | bytes, *, max_depth: int) -> Any:
    """The JSON value of `data` (RFC 8259) nested at most `max_depth` deep, or
    JsonRefused."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise JsonRefused(Why.NOT_UTF8) from None
    if nesting(text, max_depth) > max_depth:
        raise JsonRefused(Why.TOO_DEEP, f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise JsonRefused(Why.NOT_JSON) from None
