"""The Cloud Signature Consortium API facade for programs (pyHanko's `CSCSigner`,
scripts): /csc/v1 with exactly the fields CSCSigner sends, and /csc/v2's names.

Programs have no Origin; they present the bearer token from the 0600 file
DIR/csc.token instead, and their SADs are bound to the origin "csc:local".
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.protocol.errors import ErrorCode, RpcError, error_for
from agent.protocol.gate import GATE
from agent.protocol.jsonbody import JsonRefused, read_json
from agent.protocol.jsonrpc import credential_json
from agent.tokens.model import KeyType, Padding, split_credential

TOKEN_FILE = "csc.token"  # noqa: S105 - a file name, not a secret
CSC_ORIGIN = "csc:local"
_TOKEN = web.AppKey("csc_token", str)
# Signature algorithm OIDs (RFC 5758, RFC 8017) <-> what the token layer calls them.
_SIGN_ALGOS: dict[str, Padding] = {
    "1.2.840.10045.4.3.2": Padding.ECDSA, "1.2.840.10045.4.3.3": Padding.ECDSA,
    "1.2.840.10045.4.3.4": Padding.ECDSA,
    "1.2.840.113549.1.1.1": Padding.PKCS1V15, "1.2.840.113549.1.1.11": Padding.PKCS1V15,
    "1.2.840.113549.1.1.12": Padding.PKCS1V15, "1.2.840.113549.1.1.13": Padding.PKCS1V15,
    "1.2.840.113549.1.1.10": Padding.PSS,
}
_KEY_ALGOS: dict[KeyType, list[str]] = {
    KeyType.EC_P256: ["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"],
    KeyType.EC_P384: ["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"],
    KeyType.RSA_2048: ["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12",
                       "1.2.840.113549.1.1.13", "1.2.840.113549.1.1.10"],
}
MAX_BATCH = 100


def bearer_token(directory: Path) -> str:
    path = directory / TOKEN_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode())
        finally:
            os.close(fd)
    return path.read_text().strip()


def _error(status: int, error: RpcError) -> web.Response:
    # CSC error shape (CSC API §10.1): "error" and "error_description".
    return web.json_response({"error": error.code.name.lower(),
                              "error_description": error.message, **error.data}, status=status)


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[dict[str, Any] | None]]


def _endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        expected = f"Bearer {request.app[_TOKEN]}".encode()
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return _error(401, RpcError(ErrorCode.NOT_PAIRED, "bearer token required"))
        try:
            body = await read_json(request) if request.body_exists else {}
        except JsonRefused as exc:  # not JSON, or nested too deeply (SECURITY #46)
            return _error(400, RpcError(ErrorCode.BAD_REQUEST, f"the body: {exc.reason}"))
        if not isinstance(body, dict):
            return _error(400, RpcError(ErrorCode.BAD_REQUEST, "the body is a JSON object"))
        try:
            answer = await handler(request, body)
            return web.Response(status=204) if answer is None else web.json_response(answer)
        except Exception as exc:  # one mapping for domain errors, as on the socket
            error = error_for(exc)
            status = {ErrorCode.INTERNAL: 500, ErrorCode.OTP_UNAVAILABLE: 503}.get(
                error.code, 400)
            return _error(status, error)

    return wrapped


def _text(body: dict[str, Any], key: str, limit: int = 200) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{key}: a string")
    return value


def _hashes(body: dict[str, Any], *names: str) -> list[bytes]:
    for name in names:
        if name in body:
            values = body[name]
            if (not isinstance(values, list) or not 0 < len(values) <= MAX_BATCH
                    or not all(isinstance(v, str) and len(v) <= 100 for v in values)):
                raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: a list of base64 hashes")
            try:
                return [base64.b64decode(v, validate=True) for v in values]
            except ValueError:
                raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: base64") from None
    raise RpcError(ErrorCode.INVALID_PARAMS, f"{names[0]}: required")


async def _info(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"specs": "1.0.4.0", "name": "qsign agent", "region": "local",
            "lang": "en-US", "authType": ["external"],
            "methods": ["credentials/list", "credentials/info", "credentials/sendOTP",
                        "credentials/authorize", "signatures/signHash"]}


async def _list(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    registry = _signing(request).registry
    ids = []
    for info in registry.tokens():
        credentials = await registry.call(info.id, lambda t: t.credentials())
        ids += [f"{info.id}/{c.id}" for c in credentials if c.has_certificate]
    return {"credentialIDs": ids}


async def _credential_info(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    credential_id = _text(body, "credentialID")
    token_id, key_id = split_credential(credential_id)
    credentials = await _signing(request).registry.call(token_id, lambda t: t.credentials())
    credential = next((c for c in credentials if c.id == key_id), None)
    if credential is None:
        raise RpcError(ErrorCode.KEY_NOT_FOUND)
    described = credential_json(token_id, credential, chain=True)
    return {
        "key": {"status": "enabled", "algo": _KEY_ALGOS[credential.key_type],
                "len": credential.key_type.size},
        "cert": {"status": "valid", **described.get("cert", {"certificates": []})},
        "authMode": "explicit", "SCAL": "2", "multisign": MAX_BATCH,
        "PIN": {"presence": "true", "format": "N"},
        "OTP": {"presence": "true", "type": "online", "format": "N"},
    }


def _otp_session(body: dict[str, Any]) -> str | None:
    """Our extension: the signature service's OTP session for an SMS code."""
    if "otpSession" not in body:
        return None
    value = _text(body, "otpSession", 512)
    if not value.isascii() or not value.isprintable() or " " in value:
        raise RpcError(ErrorCode.INVALID_PARAMS, "otpSession: printable ASCII")
    return value


async def _send_otp(request: web.Request, body: dict[str, Any]) -> None:
    """CSC v1 §11.7 credentials/sendOTP (credentialID; answered with 204 No Content),
    with our extensions `otpSession` and `hash`/`hashes`: the SMS code is bound to
    the hashes the following credentials/authorize presents."""
    session = _otp_session(body)
    if session is None:
        raise RpcError(ErrorCode.INVALID_PARAMS, "otpSession: required for an SMS code")
    await _signing(request).send_otp(
        origin=CSC_ORIGIN, credential_id=_text(body, "credentialID"),
        hashes=_hashes(body, "hash", "hashes"), otp_session=session)


async def _authorize(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    authorization = await _signing(request).authorize(
        origin=CSC_ORIGIN, credential_id=_text(body, "credentialID"),
        hashes=_hashes(body, "hash", "hashes"), otp=_text(body, "OTP", 16),
        pin=_text(body, "PIN", 16), otp_session=_otp_session(body))
    return {"SAD": authorization.sad, "expiresIn": authorization.expires_in}


async def _sign_hash(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    sign_algo = body.get("signAlgo")
    padding = _SIGN_ALGOS.get(sign_algo) if isinstance(sign_algo, str) else None
    if padding is None:
        raise RpcError(ErrorCode.UNSUPPORTED, "signAlgo: an ECDSA or RSA signature OID")
    key = body.get("idempotencyKey") or request.headers.get("Idempotency-Key")
    signatures = await _signing(request).sign_hash(
        origin=CSC_ORIGIN, credential_id=_text(body, "credentialID"),
        sad=_text(body, "SAD", 100), hashes=_hashes(body, "hash", "hashes"),
        padding=padding, idempotency_key=key if isinstance(key, str) else None)
    return {"signatures": [base64.b64encode(s).decode() for s in signatures]}


def _signing(request: web.Request) -> Any:

    return request.app[GATE].signing


def add_csc_routes(app: web.Application, token: str) -> None:
    app[_TOKEN] = token
    for version in ("v1", "v2"):
        base = f"/csc/{version}"
        app.router.add_post(f"{base}/info", _endpoint(_info))
        app.router.add_post(f"{base}/credentials/list", _endpoint(_list))
        app.router.add_post(f"{base}/credentials/info", _endpoint(_credential_info))
        app.router.add_post(f"{base}/credentials/sendOTP", _endpoint(_send_otp))
        app.router.add_post(f"{base}/credentials/authorize", _endpoint(_authorize))
        app.router.add_post(f"{base}/signatures/signHash", _endpoint(_sign_hash))
