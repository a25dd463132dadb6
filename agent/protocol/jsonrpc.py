"""JSON-RPC 2.0 for the agent: framing, one JSON Schema per method, one handler per
method (Web eID's command-handler shape). Handlers know nothing of WebSockets: they
get a `Call` and answer JSON, or raise; errors are mapped once (`errors.error_for`).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import x509 as asn1_x509
from jsonschema import Draft202012Validator

from agent.identity.enrolment import EnrolmentService
from agent.issuers import IssuerChain
from agent.protocol.errors import ErrorCode, RpcError, error_for
from agent.protocol.jsonbody import MAX_DEPTH
from agent.protocol.params import validator, violation
from agent.secondfactor import GRANT_SECONDS, Grants, SecondFactor
from agent.signing import SigningService
from agent.tokens.model import (
    Credential,
    KeyType,
    Padding,
    PinStatus,
    Token,
    TokenInfo,
    split_credential,
)
from agent.tokens.registry import TokenRegistry
from ground import __version__
from ground.json_bounded import JsonRefused, Why, parse_bounded


@dataclass
class Call:
    """What a handler may use: the registry, the caller's origin, a notification sink."""

    registry: TokenRegistry
    origin: str
    params: dict[str, Any]
    notify: Callable[[str, dict[str, Any]], Awaitable[None]]
    signing: SigningService
    enrolment: EnrolmentService
    second_factor: SecondFactor
    grants: Grants  # the connection's, not the message's
    issuers: IssuerChain
    subscriptions: list[Any] = field(default_factory=list)

    def factor(self) -> SecondFactor:
        if self.second_factor is None:
            raise RpcError(ErrorCode.METHOD_NOT_FOUND)  # only where a gate is wired
        return self.second_factor

    def require_second_factor(self, token_id: str) -> SecondFactor:
        """Before the PIN or PUK goes to `token_id` (agent.secondfactor)."""
        factor = self.factor()
        factor.require(origin=self.origin, token_id=token_id, grants=self.grants)
        return factor


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    name: str
    schema: dict[str, Any]
    handler: Handler

    def validator(self) -> Draft202012Validator:
        return validator(self.schema)


_TOKEN_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_CREDENTIAL_ID = {"type": "string", "minLength": 1, "maxLength": 64}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or [],
            "additionalProperties": False}


def token_json(info: TokenInfo) -> dict[str, Any]:
    return {"id": info.id, "label": info.label, "serial": info.serial,
            "manufacturer": info.manufacturer, "model": info.model, "reader": info.reader,
            "routes": [r.kind.value for r in info.routes],
            "pinPad": info.protected_authentication_path}


def credential_json(token_id: str, credential: Credential, *, chain: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "credentialID": f"{token_id}/{credential.id}", "tokenID": token_id,
        "keyID": credential.id, "label": credential.label,
        "key": {"type": credential.key_type.value, "len": credential.key_type.size},
        "hasCertificate": credential.has_certificate,
        "authMode": "explicit",
        "PIN": {"presence": "true", "perSignature": credential.pin_always},
        "SCAL": "2",
    }
    if chain and credential.certificate is not None:
        body["cert"] = {"certificates": [base64.b64encode(c).decode() for c in
                                         (credential.certificate, *credential.chain)]}
    return body


async def _info(call: Call) -> Any:
    return {"name": "qsign agent", "version": __version__, "specs": "CSC-1.0.4.0-like",
            "methods": sorted(METHODS), "origin": call.origin}


async def _tokens_list(call: Call) -> Any:
    tokens = []
    for info in call.registry.tokens():
        status: PinStatus = await call.registry.call(info.id, lambda t: t.pin_status())
        tokens.append({**token_json(info), "pinRetries": status.retries_left,
                       "pinBlocked": status.blocked})
    return {"tokens": tokens}


async def _tokens_subscribe(call: Call) -> Any:
    queue = call.registry.subscribe()
    call.subscriptions.append(queue)

    async def forward() -> None:
        while True:
            event = await queue.get()
            await call.notify("tokens/event", {
                "kind": event.kind.value, "tokenID": event.token_id,
                "token": token_json(event.info) if event.info else None})

    call.subscriptions.append(asyncio.create_task(forward()))
    return {"subscribed": True}


async def _credentials_list(call: Call) -> Any:
    wanted = call.params.get("tokenID")
    listed = []
    for info in call.registry.tokens():
        if wanted is not None and info.id != wanted:
            continue
        credentials = await call.registry.call(info.id, lambda t: t.credentials())
        listed += [credential_json(info.id, c, chain=False) for c in credentials]
    if wanted is not None and not any(info.id == wanted for info in call.registry.tokens()):
        raise RpcError(ErrorCode.TOKEN_NOT_FOUND)
    return {"credentialIDs": [c["credentialID"] for c in listed], "credentials": listed}


async def _credentials_info(call: Call) -> Any:
    token_id, key_id = split_credential(call.params["credentialID"])
    credentials = await call.registry.call(token_id, lambda t: t.credentials())
    for credential in credentials:
        if credential.id == key_id:
            body = credential_json(token_id, credential, chain=False)
            if credential.certificate is not None:  # the chain, completed from our CA
                chain = await call.issuers.complete(credential.certificate, credential.chain)
                body["cert"] = {"certificates": [base64.b64encode(c).decode()
                                                 for c in chain]}
            return body
    raise RpcError(ErrorCode.KEY_NOT_FOUND)


_HASHES = {"type": "array", "minItems": 1, "maxItems": 100,
           "items": {"type": "string", "minLength": 40, "maxLength": 90,
                     "pattern": "^[A-Za-z0-9+/=]+$"}}
_PIN = {"type": "string", "minLength": 4, "maxLength": 16}
_OTP = {"type": "string", "minLength": 6, "maxLength": 10, "pattern": "^[0-9 ]+$"}
_PADDING = {"enum": ["ECDSA", "PKCS1V15", "PSS"]}
# The signature service's OTP session (portal/API.md "SMS OTP"): opaque, printable ASCII.
_OTP_SESSION = {"type": "string", "minLength": 1, "maxLength": 512,
                "pattern": "^[\\x21-\\x7e]+$"}


def _hashes(values: list[str]) -> list[bytes]:
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except ValueError:
        raise RpcError(ErrorCode.INVALID_PARAMS, "hashes: base64") from None


def _padding(value: str | None) -> Padding | None:
    return None if value is None else Padding(value)


async def _second_factor_verify(call: Call) -> Any:
    """Prove a second factor for a token on this connection (agent.secondfactor): a TOTP
    code, an SMS code the signature service sent for this token's management, or (no
    OTP) a confirmation a person gives outside the page."""
    p = call.params
    kind = await call.factor().prove(
        origin=call.origin, token_id=p["tokenID"], grants=call.grants, otp=p.get("OTP"),
        otp_session=p.get("otpSession"), credential_id=p.get("credentialID"),
        confirmation=p.get("confirmation"))
    return {"tokenID": p["tokenID"], "method": kind, "expiresIn": GRANT_SECONDS}


async def _otp_enrol(call: Call) -> Any:
    """TOTP enrolment (or replacement) for a credential: the second factor first (an
    existing TOTP code, an SMS code, or a confirmation outside the page), then the
    card's PIN; failure counters and lockouts carry over (SECURITY #33)."""
    credential_id = call.params["credentialID"]
    token_id, _ = split_credential(credential_id)
    factor = call.require_second_factor(token_id)
    replacing = credential_id in factor.otp_store.accounts(credential_id)
    try:
        await call.registry.call(token_id, lambda t: t.verify_pin(call.params["PIN"]))
        enrolment = await asyncio.to_thread(call.signing.totp.enrol, credential_id)
    except Exception as exc:
        factor.journal.record("totp-enrol", origin=call.origin, subject=credential_id,
                              outcome=f"refused: {type(exc).__name__}")
        raise
    factor.journal.record("totp-enrol", origin=call.origin, subject=credential_id,
                          outcome="replaced" if replacing else "enrolled")
    return {"uri": enrolment.uri, "qr": base64.b64encode(enrolment.qr_png).decode()}


async def _send_otp(call: Call) -> Any:
    """CSC credentials/sendOTP: the signature service texts a code bound to `hashes`
    (for documents/signPdf: the SHA-256 of each PDF as it will be submitted)."""
    p = call.params
    challenge = await call.signing.send_otp(
        origin=call.origin, credential_id=p["credentialID"], hashes=_hashes(p["hashes"]),
        otp_session=p["otpSession"])
    return {"phoneMasked": challenge.phone_masked, "expiresIn": challenge.expires_in}


async def _authorize(call: Call) -> Any:
    p = call.params
    authorization = await call.signing.authorize(
        origin=call.origin, credential_id=p["credentialID"], hashes=_hashes(p["hashes"]),
        otp=p["OTP"], pin=p["PIN"], padding=_padding(p.get("padding")),
        otp_session=p.get("otpSession"))
    return {"SAD": authorization.sad, "expiresIn": authorization.expires_in}


async def _sign_hash(call: Call) -> Any:
    p = call.params
    signatures = await call.signing.sign_hash(
        origin=call.origin, credential_id=p["credentialID"], sad=p["SAD"],
        hashes=_hashes(p["hashes"]), padding=_padding(p.get("padding")),
        idempotency_key=p.get("idempotencyKey"))
    return {"signatures": [base64.b64encode(s).decode() for s in signatures]}


async def _sign_pdf(call: Call) -> Any:
    p = call.params
    try:
        documents = [base64.b64decode(d, validate=True) for d in p["documents"]]
    except ValueError:
        raise RpcError(ErrorCode.INVALID_PARAMS, "documents: base64 PDFs") from None
    signed = await call.signing.sign_pdfs(
        origin=call.origin, credential_id=p["credentialID"], documents=documents,
        otp=p["OTP"], pin=p["PIN"], level=p.get("level", "B-B"),
        timestamp_url=call.signing.timestamp_url, otp_session=p.get("otpSession"))
    return {"documents": [base64.b64encode(d).decode() for d in signed]}


async def _pin_change(call: Call) -> Any:
    p = call.params
    return await _journaled(call, "pin-change", lambda t: t.change_pin(p["PIN"], p["newPIN"]))


async def _pin_unblock(call: Call) -> Any:
    p = call.params
    return await _journaled(call, "pin-unblock", lambda t: t.unblock_pin(p["PUK"], p["newPIN"]))


async def _journaled(call: Call, event: str, operation: Callable[[Token], None]) -> Any:
    """A PIN/PUK operation on the call's token behind the second factor, journaled
    whether it is done or refused."""
    token_id = call.params["tokenID"]
    factor = call.require_second_factor(token_id)
    try:
        await call.registry.call(token_id, operation)
    except Exception as exc:
        factor.journal.record(event, origin=call.origin, subject=token_id,
                              outcome=f"refused: {type(exc).__name__}")
        raise
    factor.journal.record(event, origin=call.origin, subject=token_id, outcome="done")
    return {}


async def _enroll_generate(call: Call) -> Any:
    """A key made on the token for a qualified certificate (issue 7): its public key,
    the token's attestation, and a CSR signed on the token kept by the agent."""
    p = call.params
    call.require_second_factor(p["tokenID"])
    pending = await call.enrolment.generate(p["tokenID"], p.get("keyID", "9C"),
                                            KeyType(p.get("keyType", "EC_P256")),
                                            p["PIN"], origin=call.origin,
                                            confirmation=p.get("confirmation"))
    return {"enrolmentID": pending.id, "resumed": pending.resumed,
            "publicKey": base64.b64encode(pending.material.spki).decode(),
            "attestation": [base64.b64encode(c).decode()
                            for c in pending.material.attestation]}


async def _enroll_complete(call: Call) -> Any:
    """CSR + attestation + the identity evidence to the CA named in the agent's own
    configuration (never one a page names); the certificate written to the token."""
    p = call.params
    done = await call.enrolment.complete(p["enrolmentID"], p["evidence"])
    issued = done.issued
    assert issued is not None  # complete() answers only an enrolment the CA issued
    not_after = asn1_x509.Certificate.load(issued.certificate).not_valid_after
    return {"credentialID": f"{done.token_id}/{done.key_id}", "serial": issued.serial,
            "certificate": base64.b64encode(issued.certificate).decode(),
            "chain": [base64.b64encode(c).decode() for c in issued.chain],
            "notAfter": not_after.isoformat()}


_CONFIRMATION = {"type": "string", "minLength": 8, "maxLength": 16}  # "ABCD-EFGH"
_NEW_PIN = {"type": "string", "pattern": "^[0-9]{4,8}$"}  # the service's rule: 4-8 digits
_CREDENTIAL = {"type": "string", "minLength": 3, "maxLength": 200}
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("documents/signPdf", _object({
        "credentialID": _CREDENTIAL, "PIN": _PIN, "OTP": _OTP,
        "documents": {"type": "array", "minItems": 1, "maxItems": 20,
                      "items": {"type": "string", "minLength": 8}},
        "level": {"enum": ["B-B", "B-T"]}, "otpSession": _OTP_SESSION},
        ["credentialID", "PIN", "OTP", "documents"]), _sign_pdf),
    Method("credentials/sendOTP", _object({
        "credentialID": _CREDENTIAL, "hashes": _HASHES, "otpSession": _OTP_SESSION},
        ["credentialID", "hashes", "otpSession"]), _send_otp),
    Method("otp/enrol", _object({"credentialID": _CREDENTIAL, "PIN": _PIN},
                                ["credentialID", "PIN"]), _otp_enrol),
    Method("secondFactor/verify", _object({
        "tokenID": _TOKEN_ID, "OTP": _OTP, "otpSession": _OTP_SESSION,
        "credentialID": _CREDENTIAL, "confirmation": _CONFIRMATION}, ["tokenID"]),
        _second_factor_verify),
    Method("credentials/authorize", _object({
        "credentialID": _CREDENTIAL, "hashes": _HASHES, "PIN": _PIN, "OTP": _OTP,
        "numSignatures": {"type": "integer", "minimum": 1, "maximum": 100},
        "padding": _PADDING, "otpSession": _OTP_SESSION},
        ["credentialID", "hashes", "PIN", "OTP"]), _authorize),
    Method("signatures/signHash", _object({
        "credentialID": _CREDENTIAL, "SAD": {"type": "string", "minLength": 20,
                                             "maxLength": 100},
        "hashes": _HASHES, "padding": _PADDING,
        "idempotencyKey": {"type": "string", "minLength": 8, "maxLength": 100}},
        ["credentialID", "SAD", "hashes"]), _sign_hash),
    Method("pin/change", _object({"tokenID": _TOKEN_ID, "PIN": _PIN, "newPIN": _NEW_PIN},
                                 ["tokenID", "PIN", "newPIN"]), _pin_change),
    Method("pin/unblock", _object({"tokenID": _TOKEN_ID, "PUK": _PIN, "newPIN": _NEW_PIN},
                                  ["tokenID", "PUK", "newPIN"]), _pin_unblock),
    Method("enroll/generate", _object({
        "tokenID": _TOKEN_ID, "keyID": {"enum": ["9A", "9C", "9D", "9E"]},
        "keyType": {"enum": [k.value for k in KeyType]}, "PIN": _PIN,
        "confirmation": _CONFIRMATION}, ["tokenID", "PIN"]), _enroll_generate),
    Method("enroll/complete", _object({
        "enrolmentID": {"type": "string", "minLength": 8, "maxLength": 64},
        "evidence": {"type": "string", "minLength": 20, "maxLength": 16384,
                     "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$"}},
        ["enrolmentID", "evidence"]), _enroll_complete),
    Method("info", _object({}), _info),
    Method("tokens/list", _object({}), _tokens_list),
    Method("tokens/subscribe", _object({}), _tokens_subscribe),
    Method("credentials/list", _object({"tokenID": _TOKEN_ID}), _credentials_list),
    Method("credentials/info", _object({"credentialID": {
        "type": "string", "minLength": 3, "maxLength": 200}}, ["credentialID"]),
        _credentials_info),
)}
_VALIDATORS = {name: method.validator() for name, method in METHODS.items()}


async def handle_text(text: str, make_call: Callable[[dict[str, Any]], Call]
                      ) -> dict[str, Any] | None:
    """One message in, one response out (None for a notification)."""
    try:  # bounded before json.loads recurses (SECURITY #46)
        message = parse_bounded(text, max_depth=MAX_DEPTH)
    except JsonRefused as exc:
        if exc.why is Why.TOO_DEEP:
            return _response(None, error=RpcError(ErrorCode.INVALID_REQUEST, exc.reason))
        return _response(None, error=RpcError(ErrorCode.PARSE_ERROR))
    if not isinstance(message, dict):
        return _response(None, error=RpcError(ErrorCode.INVALID_REQUEST,
                                              "batches are not supported"))
    request_id = message.get("id")
    if not (request_id is None or isinstance(request_id, str | int)) or isinstance(
            request_id, bool) or (isinstance(request_id, str) and len(request_id) > 128):
        return _response(None, error=RpcError(ErrorCode.INVALID_REQUEST, "bad id"))
    method_name = message.get("method")
    if (message.get("jsonrpc") != "2.0" or not isinstance(method_name, str)
            or set(message) - {"jsonrpc", "method", "params", "id"}):
        return _response(request_id, error=RpcError(ErrorCode.INVALID_REQUEST))
    method = METHODS.get(method_name)
    if method is None:
        return _response(request_id, error=RpcError(ErrorCode.METHOD_NOT_FOUND))
    params = message.get("params", {})
    refused = violation(_VALIDATORS[method_name], params)
    if refused is not None:
        return _response(request_id, error=refused)
    try:
        result = await method.handler(make_call(params))
    except Exception as exc:  # mapped once; internals only to the log
        return _response(request_id, error=error_for(exc))
    return _response(request_id, result=result) if "id" in message else None


def _response(request_id: Any, *, result: Any = None, error: RpcError | None = None
              ) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}
    return {"jsonrpc": "2.0", "id": request_id, "result": result}
