"""Every JSON body the portal reads, parsed once and within bounds (SECURITY.md #46).

`read_json(request, schema)` is the one way a portal route reads its body: `Content-Type:
application/json` (RFC 8259 §11; a page cannot send that type to another site without a
CORS preflight, which the portal never grants), at most the configured request size, a
JSON object, parsed by the shared bounded parser (ground/json_bounded.py: UTF-8, no
NaN/Infinity, nested at most `MAX_DEPTH` deep, the nesting measured before `json.loads`
recurses), then checked against the route's JSON Schema (portal/body_schema.py). Anything
else is the portal's typed 4xx, never a 500. `loads_bounded` is the same parser at the
portal's depth for bodies read another way (the identity service).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ground.json_bounded import JsonRefused, nesting, parse_bounded
from portal.body_schema import BodySchema
from portal.errors import Code, PortalError

__all__ = ["MAX_DEPTH", "JsonBodyError", "loads_bounded", "nesting", "read_json"]

MAX_DEPTH = 32  # the portal's own bodies nest 4 deep at most
JsonBodyError = JsonRefused  # the name the portal's modules catch


def loads_bounded(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `data` (RFC 8259), or JsonBodyError."""
    return parse_bounded(data, max_depth=max_depth)


async def read_json(request: web.Request, schema: BodySchema) -> dict[str, Any]:
    """The request's body as a JSON object that fits `schema`, or the PortalError that says
    why not (BAD_REQUEST with the `field` and the `rule` it breaks)."""
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
        raise PortalError(Code.BAD_REQUEST, f"the body is {exc.reason}") from None
    if not isinstance(body, dict):
        raise PortalError(Code.BAD_REQUEST, "the body must be a JSON object")
    problem = schema.violation(body)
    if problem is not None:
        raise PortalError(Code.BAD_REQUEST, str(problem), field=problem.field,
                          rule=problem.rule)
    return body
