"""Every JSON body the portal reads, parsed once and within bounds (SECURITY.md #46).

`read_json(request)` is the one way a portal route reads its body: `Content-Type:
application/json` (RFC 8259 §11; a page cannot send that type to another site without a
CORS preflight, which the portal never grants), at most the configured request size,
UTF-8, no NaN/Infinity, nested at most `MAX_DEPTH` deep, a JSON object. Anything else is
a typed 4xx, never a 500: the nesting is measured before `json.loads` runs, since its
recursion would exhaust the stack on a 50,000-deep array (RecursionError, then 500).
`loads_bounded` is the same parser for bodies read another way (the identity service).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from portal.errors import Code, PortalError

MAX_DEPTH = 32  # the portal's own bodies nest 4 deep at most
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]')  # a whole string, or a bracket


class JsonBodyError(ValueError):
    """The bytes are not JSON the portal reads; the message says why."""


def nesting(text: str, limit: int) -> int:
    """The deepest bracket nesting outside strings, counted without recursion and given
    up once past `limit` (strings are skipped whole by the regular expression)."""
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


def loads_bounded(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `data` (RFC 8259), or JsonBodyError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonBodyError("the body is not UTF-8") from None
    if nesting(text, max_depth) > max_depth:
        raise JsonBodyError(f"the body is nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise JsonBodyError("the body is not JSON") from None


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object, or the PortalError that says why not."""
    if request.content_type != "application/json":
        raise PortalError(Code.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PortalError(Code.PAYLOAD_TOO_LARGE) from None
    except ConnectionResetError:  # the client went away, or was cut off as too slow
        raise PortalError(Code.BAD_REQUEST, "the body did not arrive whole") from None
    try:
        body = loads_bounded(data)
    except JsonBodyError as exc:
        raise PortalError(Code.BAD_REQUEST, str(exc)) from None
    if not isinstance(body, dict):
        raise PortalError(Code.BAD_REQUEST, "the body must be a JSON object")
    return body
