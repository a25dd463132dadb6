"""The Cloud Signature Consortium API facade for programs (pyHanko's `CSCSigner`,
scripts): /csc/v1 with exactly the fields CSCSigner sends, and /csc/v2's names.

Programs have no Origin; they present the bearer token from the 0600 file
DIR/csc.token instead, and their SADs are bound to the origin "csc:local".
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator

from agent.protocol.csc_credential import credential_info
from agent.protocol.errors import ErrorCode, RpcError, error_for
from agent.protocol.gate import GATE
from agent.protocol.jsonbody import JsonRefused, read_json
from agent.protocol.params import validator, violation
from agent.signing import SigningService
from agent.tokens.model import Padding, split_credential
from ground.files import owner_only_token

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
MAX_BATCH = 100


def bearer_token(directory: Path) -> str:
    """The CSC facade's bearer token, created on first use in a 0600 file."""
    return owner_only_token(directory / TOKEN_FILE)


def _error(status: int, error: RpcError) -> web.Response:
    # CSC error shape (CSC API §10.1): "error" and "error_description".
    return web.json_response({"error": error.code.name.lower(),
                              "error_description": error.message, **error.data}, status=status)


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[dict[str, Any] | None]]


def _endpoint(handler: Handler, checker: Draft202012Validator
              ) -> Callable[[web.Request], Awaitable[web.Response]]:
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
        refused = violation(checker, body)
        if refused is not None:
            return _error(400, refused)
        try:
            answer = await handler(request, body)
            return web.Response(status=204) if answer is None else web.json_response(answer)
        except Exception as exc:  # one mapping for domain errors, as on the socket
            error = error_for(exc)
            status = {ErrorCode.INTERNAL: 500, ErrorCode.OTP_UNAVAILABLE: 503}.get(
                error.code, 400)
            return _error(status, error)

    return wrapped


def _hashes(body: dict[str, Any]) -> list[bytes]:
    """The v1 `hash` list, else the v2 `hashes` (the schema asks one of them)."""
    values = body["hash"] if "hash" in body else body["hashes"]
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except ValueError:
        raise RpcError(ErrorCode.INVALID_PARAMS, "hash: base64") from None


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
    """CSC v1.0.4 §11.5 / v2.0 §11.5 credentials/info (agent/protocol/csc_credential.py)."""
    token_id, key_id = split_credential(body["credentialID"])
    credentials = await _signing(request).registry.call(token_id, lambda t: t.credentials())
    credential = next((c for c in credentials if c.id == key_id), None)
    if credential is None:
        raise RpcError(ErrorCode.KEY_NOT_FOUND)
    return await credential_info(
        credential, body, version="v2" if request.path.startswith("/csc/v2/") else "v1",
        issuers=request.app[GATE].issuers, otp_mode=_signing(request).otp_mode,
        multisign=MAX_BATCH)


async def _send_otp(request: web.Request, body: dict[str, Any]) -> None:
    """CSC v1 §11.7 credentials/sendOTP (credentialID; answered with 204 No Content),
    with our extensions `otpSession` and `hash`/`hashes`: the SMS code is bound to
    the hashes the following credentials/authorize presents."""
    await _signing(request).send_otp(
        origin=CSC_ORIGIN, credential_id=body["credentialID"], hashes=_hashes(body),
        otp_session=body["otpSession"])


async def _authorize(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    authorization = await _signing(request).authorize(
        origin=CSC_ORIGIN, credential_id=body["credentialID"], hashes=_hashes(body),
        otp=body["OTP"], pin=body["PIN"], otp_session=body.get("otpSession"))
    return {"SAD": authorization.sad, "expiresIn": authorization.expires_in}


async def _sign_hash(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    padding = _SIGN_ALGOS.get(body["signAlgo"])
    if padding is None:
        raise RpcError(ErrorCode.UNSUPPORTED, "signAlgo: an ECDSA or RSA signature OID")
    key = body.get("idempotencyKey") or request.headers.get("Idempotency-Key")
    signatures = await _signing(request).sign_hash(
        origin=CSC_ORIGIN, credential_id=body["credentialID"], sad=body["SAD"],
        hashes=_hashes(body), padding=padding, idempotency_key=key)
    return {"signatures": [base64.b64encode(s).decode() for s in signatures]}


def _signing(request: web.Request) -> SigningService:
    return request.app[GATE].signing


def _body(properties: dict[str, Any], required: tuple[str, ...] = (),
          *, hashes: bool = False) -> dict[str, Any]:
    """A route's body: the fields named here are checked, other CSC fields pass (CSC API
    v1.0.4 §11, v2.0 §11); `hashes`: the v1 `hash` or the v2 `hashes` list is required."""
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": list(required)}
    if hashes:
        schema["properties"] = {**properties, "hash": _HASH_LIST, "hashes": _HASH_LIST}
        schema["if"] = {"not": {"required": ["hashes"]}}
        schema["then"] = {"required": ["hash"]}
    return schema


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit}


_HASH_LIST = {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
              "items": {"type": "string", "maxLength": 100}}
# The signature service's OTP session (our extension): opaque, printable ASCII, no space.
_OTP_SESSION = {"type": "string", "minLength": 1, "maxLength": 512,
                "pattern": "^[\\x21-\\x7e]+$"}
_CERTIFICATES = {"enum": ["none", "single", "chain"]}
# What pyHanko's CSCSigner and CSC v2 clients send beside the fields the agent reads.
_PASSED = {"clientData": _text(4096), "lang": _text(35), "description": _text(500),
           "hashAlgo": _text(64), "hashAlgorithmOID": _text(64), "signAlgoParams": _text(4096),
           "numSignatures": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH},
           "certificates": _CERTIFICATES, "certInfo": {"type": "boolean"},
           "authInfo": {"type": "boolean"}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "info": _body({"lang": _PASSED["lang"]}),
    "credentials/list": _body({
        "userID": _text(200), "maxResults": {"type": "integer", "minimum": 1},
        "pageToken": _text(200), "credentialInfo": {"type": "boolean"},
        "onlyValid": {"type": "boolean"}, **_PASSED}),
    "credentials/info": _body({"credentialID": _text(200), **_PASSED}, ("credentialID",)),
    "credentials/sendOTP": _body({"credentialID": _text(200), "otpSession": _OTP_SESSION,
                                  **_PASSED}, ("credentialID", "otpSession"), hashes=True),
    "credentials/authorize": _body({
        "credentialID": _text(200), "PIN": _text(16), "OTP": _text(16),
        "otpSession": _OTP_SESSION, **_PASSED}, ("credentialID", "PIN", "OTP"), hashes=True),
    "signatures/signHash": _body({
        "credentialID": _text(200), "SAD": _text(100), "signAlgo": _text(64),
        "idempotencyKey": _text(100), **_PASSED}, ("credentialID", "SAD", "signAlgo"),
        hashes=True),
}
_CHECKERS = {route: validator(schema) for route, schema in SCHEMAS.items()}
_HANDLERS: dict[str, Handler] = {
    "info": _info, "credentials/list": _list, "credentials/info": _credential_info,
    "credentials/sendOTP": _send_otp, "credentials/authorize": _authorize,
    "signatures/signHash": _sign_hash}


def add_csc_routes(app: web.Application, token: str) -> None:
    """The routes, after the gate is set: chains are completed from its configured CA."""
    app[_TOKEN] = token
    for version in ("v1", "v2"):
        for route, handler in _HANDLERS.items():
            app.router.add_post(f"/csc/{version}/{route}", _endpoint(handler, _CHECKERS[route]))
