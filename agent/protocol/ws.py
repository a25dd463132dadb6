"""The WebSocket endpoint and the origin security around it (DESIGN "Security model").

- Host must be 127.0.0.1:P, localhost:P or [::1]:P (DNS rebinding), on every route.
- The handshake needs an Origin equal, as an exact string, to a configured or paired
  origin; else 403 before the upgrade. No Origin: refused (programs use CSC REST).
- Unknown origins pair first: POST /v1/pair answers a short code that the person
  approves outside the page (`qsign agent approve CODE`, or the agent's own page:
  agent/protocol/approve.py).
- Pairing requests only from http(s) origins of sane length; a cap on the codes
  waiting for a person (SECURITY #41).
- A connection cap, one per origin (agent/protocol/origins.py), a message size cap,
  and a per-origin request rate limit.
- An origin no longer allowed (revoked, or dropped by a policy reload) loses its open
  sockets and its SADs at once: checked before every message, and swept each second
  (agent/protocol/origins.py, SECURITY #37).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from agent.config import is_web_origin
from agent.protocol.errors import ErrorCode, RpcError
from agent.protocol.gate import GATE, SOCKETS
from agent.protocol.jsonbody import JsonRefused, read_json
from agent.protocol.jsonrpc import Call, handle_text
from agent.protocol.origins import ORIGIN_SOCKETS, close_revoked
from agent.secondfactor import Grants
from agent.state import PairingBusy

log = logging.getLogger(__name__)


def _refuse(status: int, code: ErrorCode) -> web.Response:
    return web.json_response({"error": code.name, "message": code.default_message},
                             status=status)


async def websocket(request: web.Request) -> web.StreamResponse:
    gate = request.app[GATE]
    origin = request.headers.get("Origin")
    if origin is None:
        return _refuse(403, ErrorCode.ORIGIN_NOT_ALLOWED)  # programs: CSC REST + token
    if not gate.origin_allowed(origin):
        log.info("refused a handshake from an unpaired origin")
        return _refuse(403, ErrorCode.NOT_PAIRED)
    by_origin = request.app[ORIGIN_SOCKETS]
    if (gate.connections >= gate.config.max_connections
            or by_origin.count(origin) >= gate.config.max_connections_per_origin):
        return _refuse(503, ErrorCode.RATE_LIMITED)
    ws = web.WebSocketResponse(max_msg_size=gate.config.max_message_bytes, heartbeat=30)
    await ws.prepare(request)
    gate.connections += 1
    by_origin.add(origin, ws)
    sockets: set[web.WebSocketResponse] = request.app[SOCKETS]
    sockets.add(ws)
    send_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            if not ws.closed:
                await ws.send_str(json.dumps(message))

    async def notify(method: str, params: dict[str, Any]) -> None:
        await send({"jsonrpc": "2.0", "method": method, "params": params})

    subscriptions: list[Any] = []

    grants = Grants()  # this connection's second-factor proofs (agent.secondfactor)

    def make_call(params: dict[str, Any]) -> Call:
        return Call(gate.registry, origin, params, notify, gate.signing, gate.enrolment,
                    gate.second_factor, grants, gate.issuers, subscriptions)

    try:
        async for message in ws:
            if not await gate.origin_still_allowed(origin):
                await by_origin.revoke(origin)  # revoked since the last sweep
                # This socket's close is awaited here: were the handler to return first,
                # aiohttp would drop the connection before the close frame (1006).
                await close_revoked(ws)
                break
            if message.type == WSMsgType.TEXT:
                if not gate.limiter.allow(origin):
                    await send({"jsonrpc": "2.0", "id": None,
                                "error": RpcError(ErrorCode.RATE_LIMITED).to_json()})
                    continue
                response = await handle_text(message.data, make_call)
                if response is not None:
                    await send(response)
            elif message.type == WSMsgType.BINARY:
                await send({"jsonrpc": "2.0", "id": None, "error": RpcError(
                    ErrorCode.INVALID_REQUEST, "text frames only").to_json()})
            elif message.type == WSMsgType.ERROR:
                # Oversized frames end here: aiohttp closes with 1009 (message too big).
                log.info("websocket error: %s", ws.exception())
    finally:
        gate.connections -= 1
        sockets.discard(ws)
        by_origin.discard(origin, ws)
        for item in subscriptions:
            if isinstance(item, asyncio.Task):
                item.cancel()
            else:
                gate.registry.unsubscribe(item)
    return ws


def _rpc_refusal(status: int, error: RpcError, headers: dict[str, str] | None = None
                 ) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": None, "error": error.to_json()},
                             status=status, headers=headers)


async def pair(request: web.Request) -> web.Response:
    """An unpaired origin asks for a code (JSON-RPC `pair/request` over HTTP POST).
    Only an http(s) origin as browsers send it may ask (not `null`, file://, an
    extension or junk: no person could tell what they approve), each holds one waiting
    code, and at most `max_pending_pairings` wait in all (SECURITY #41)."""
    gate = request.app[GATE]
    origin = request.headers.get("Origin")
    if origin is None:
        return _refuse(403, ErrorCode.ORIGIN_NOT_ALLOWED)
    if not is_web_origin(origin):
        log.info("refused a pairing request from a non-web origin")
        return _rpc_refusal(403, RpcError(ErrorCode.ORIGIN_NOT_ALLOWED,
                                          "only http(s) origins may pair"))
    cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if not gate.pairing_limiter.allow(origin):
        return web.json_response({"error": "RATE_LIMITED"}, status=429, headers=cors)
    try:
        body = await read_json(request)
    except JsonRefused as exc:
        return _rpc_refusal(400, RpcError(ErrorCode.PARSE_ERROR, exc.reason), cors)
    if not (isinstance(body, dict) and body.get("jsonrpc") == "2.0"
            and body.get("method") == "pair/request"):
        error = RpcError(ErrorCode.INVALID_REQUEST, "expected pair/request").to_json()
        return web.json_response({"jsonrpc": "2.0", "id": None, "error": error}, headers=cors)
    if await asyncio.to_thread(gate.origin_allowed, origin):
        result: dict[str, Any] = {"paired": True}
    else:
        try:
            code = await asyncio.to_thread(gate.state.request_pairing, origin,
                                           max_pending=gate.config.max_pending_pairings)
        except PairingBusy as exc:
            return _rpc_refusal(429, RpcError(ErrorCode.RATE_LIMITED, str(exc),
                                              {"reason": "too-many-pending"}), cors)
        result = {"paired": False, "code": f"{code[:4]}-{code[4:]}",
                  "approve": f"qsign agent approve {code}"}
    request_id = body.get("id")
    if not (isinstance(request_id, str | int) and not isinstance(request_id, bool)
            and len(str(request_id)) <= 128):
        request_id = None
    return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": result},
                             headers=cors)


async def close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(ConnectionError):
            await ws.close(code=1001, message=b"agent shutting down")
