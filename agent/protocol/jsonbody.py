"""The agent's HTTP bodies as JSON (SECURITY #46): `/v1/pair`, the CSC facade and the
approval page read their bodies through `read_json`, which parses with the shared
bounded parser (qsign/json_bounded.py) at the agent's depth; each route maps the typed
`JsonRefused` onto its own answer. The WebSocket's JSON-RPC framing
(agent.protocol.jsonrpc) applies the same parser and depth.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ground.json_bounded import JsonRefused, Why, parse_bounded

__all__ = ["MAX_DEPTH", "JsonRefused", "Why", "read_json"]

MAX_DEPTH = 16  # no request of ours nests deeper


async def read_json(request: web.Request, *, max_depth: int = MAX_DEPTH) -> Any:
    """The request's body as JSON (at most the app's client_max_size), or JsonRefused."""
    try:
        data = await request.read()
    except ConnectionError:  # the client left, or the HTTP guard cut a slow body off
        raise JsonRefused(Why.NOT_JSON, "the body did not arrive whole") from None
    return parse_bounded(data, max_depth=max_depth)
