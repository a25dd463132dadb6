"""`qsign ca serve`: the CA's HTTP service (aiohttp).

    POST /v1/enrol                         enrolment (JSON; see /openapi.json)
    GET  /v1/certificates/{serial}         one certificate and its status
    POST /v1/certificates/{serial}/revoke  revocation (bearer token from DIR/admin.token)
    POST /ocsp, GET /ocsp/{request}        OCSP responder (RFC 6960 §A.1)
    GET  /crl                              the current CRL (DER)
    POST /tsa                              RFC 3161 timestamps (application/timestamp-query)
    GET  /certs/root.cer, /certs/issuing.cer, /docs/cps, /docs/pds, /openapi.json, /health
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ca.authority import Authority
from ca.crl import CrlPublisher
from ca.enrolment import Enrolment, EnrolmentRefused, EnrolmentRequest
from ca.ocsp import OcspResponder, request_from_get_path
from ca.registry import (
    REVOCATION_REASONS,
    CertificateRecord,
    Registry,
    RegistryError,
    UnknownSerial,
)
from ca.tsa import TimestampAuthority
from ground.files import owner_only_token
from ground.json_bounded import JsonRefused, parse_bounded

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret
# Refusals that mean the request itself is malformed; the others are decisions.
_BAD_REQUEST = {"bad_request", "malformed_csr", "malformed_attestation", "malformed_evidence"}
_CONFLICT = {"evidence_reused"}


class CaService:
    """The application's state: one authority, one registry, the responders."""

    def __init__(self, authority: Authority, registry: Registry) -> None:
        self.authority = authority
        self.registry = registry
        self.enrolment = Enrolment(authority, registry)
        self.ocsp = OcspResponder(authority, registry)
        self.crl = CrlPublisher(authority, registry)
        self.tsa = TimestampAuthority(authority)
        self.admin_token = admin_token(authority.directory)


SERVICE = web.AppKey("service", CaService)


def admin_token(directory: Path) -> str:
    """The revocation API's bearer token, created on first use in a 0600 file."""
    return owner_only_token(directory / ADMIN_TOKEN_FILE)


MAX_JSON_DEPTH = 16  # an enrolment's body is a flat object of strings (SECURITY #46)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """Signing and database work off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def enrol(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        body = parse_bounded(await request.read(), max_depth=MAX_JSON_DEPTH)
    except JsonRefused as exc:
        return _error(400, "bad_request", f"the body: {exc.reason}")
    try:
        enrolment = EnrolmentRequest.from_json(body)
        record = await _blocking(service.enrolment.enrol, enrolment)
    except EnrolmentRefused as exc:
        status = 400 if exc.code in _BAD_REQUEST else 409 if exc.code in _CONFLICT else 422
        log.info("enrolment refused: %s", exc.code)
        if exc.existing is None:
            return _error(status, exc.code, str(exc))
        return web.json_response({"error": exc.code, "message": str(exc),
                                  **_issued(service, exc.existing)}, status=status)
    return web.json_response(_issued(service, record), status=201)


def _issued(service: CaService, record: CertificateRecord) -> dict[str, Any]:
    chain = [service.authority.issuing.dump(), service.authority.root.dump()]
    return {
        "serial": f"{record.serial:x}",
        "certificate": base64.b64encode(record.der).decode(),
        "chain": [base64.b64encode(c).decode() for c in chain],
        "not_after": record.not_after.isoformat(),
    }


def _serial(request: web.Request) -> int:
    text = request.match_info["serial"]
    if not 1 <= len(text) <= 40:
        raise web.HTTPBadRequest(text="bad serial")
    try:
        return int(text, 16)
    except ValueError:
        raise web.HTTPBadRequest(text="serial is hexadecimal") from None


async def certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    record = await _blocking(service.registry.get, _serial(request))
    if record is None:
        return _error(404, "unknown_serial", "no such certificate")
    return web.json_response({
        "serial": f"{record.serial:x}", "subject": record.subject,
        "status": record.status.value, "issued_at": record.issued_at.isoformat(),
        "not_after": record.not_after.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "reason": record.reason, "certificate": base64.b64encode(record.der).decode(),
    })


async def revoke(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    auth = request.headers.get("Authorization", "")
    if not hmac.compare_digest(auth.encode(), f"Bearer {service.admin_token}".encode()):
        return _error(401, "unauthorized", "revocation needs the CA's bearer token")
    try:
        body = parse_bounded(await request.read(), max_depth=MAX_JSON_DEPTH)
    except JsonRefused as exc:
        return _error(400, "bad_request", f"the body: {exc.reason}")
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason not in REVOCATION_REASONS:
        return _error(400, "bad_reason", f"reason: one of {', '.join(REVOCATION_REASONS)}")
    try:
        record = await _blocking(service.registry.revoke, _serial(request), reason)
    except UnknownSerial:
        return _error(404, "unknown_serial", "no such certificate")
    except RegistryError as exc:
        return _error(400, "bad_request", str(exc))
    await _blocking(service.crl.refresh)
    return web.json_response({"serial": f"{record.serial:x}", "status": record.status.value,
                              "revoked_at": record.revoked_at.isoformat()
                              if record.revoked_at else None, "reason": record.reason})


async def ocsp_post(request: web.Request) -> web.Response:
    body = await request.read()
    der = await _blocking(request.app[SERVICE].ocsp.respond, body)
    return web.Response(body=der, content_type="application/ocsp-response")


async def ocsp_get(request: web.Request) -> web.Response:
    try:
        body = request_from_get_path(request.match_info["request"])
    except ValueError:
        body = b""  # answered as malformedRequest by the responder
    der = await _blocking(request.app[SERVICE].ocsp.respond, body)
    return web.Response(body=der, content_type="application/ocsp-response")


async def crl(request: web.Request) -> web.Response:
    der = await _blocking(request.app[SERVICE].crl.current)
    return web.Response(body=der, content_type="application/pkix-crl")


async def tsa(request: web.Request) -> web.Response:
    body = await request.read()
    der = await _blocking(request.app[SERVICE].tsa.respond, body)
    return web.Response(body=der, content_type="application/timestamp-reply")


def _certificate_file(role: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        cert = request.app[SERVICE].authority.certificates[role]
        return web.Response(body=cert.dump(), content_type="application/pkix-cert")

    return handler


_DOCS = {
    "cps": "Certification Practice Statement: qualified certificates for electronic "
           "signatures of natural persons under ETSI EN 319 411-2 QCP-n-qscd.\n",
    "pds": "PKI Disclosure Statement (ETSI EN 319 411-1 Annex A): qualified certificates "
           "for natural persons, keys generated on a qualified signature creation device.\n",
}


async def document(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _DOCS:
        raise web.HTTPNotFound()
    return web.Response(text=_DOCS[name])


async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    count = await _blocking(lambda: len(service.registry.all()))
    return web.json_response({"status": "ok", "certificates": count})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


@web.middleware
async def _json_errors(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
    """Every failure answers JSON with a code; internals go to the log only."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large", f"bodies are at most {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error")


def create_app(authority: Authority, registry: Registry) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors])
    app[SERVICE] = CaService(authority, registry)
    app.router.add_post("/v1/enrol", enrol)
    app.router.add_get("/v1/certificates/{serial}", certificate)
    app.router.add_post("/v1/certificates/{serial}/revoke", revoke)
    app.router.add_post("/ocsp", ocsp_post)
    app.router.add_get("/ocsp/{request:.+}", ocsp_get)
    app.router.add_get("/crl", crl)
    app.router.add_post("/tsa", tsa)
    app.router.add_get("/certs/root.cer", _certificate_file("root"))
    app.router.add_get("/certs/issuing.cer", _certificate_file("issuing"))
    app.router.add_get("/docs/{name}", document)
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi)

    async def close_registry(app: web.Application) -> None:
        app[SERVICE].registry.close()

    app.on_cleanup.append(close_registry)
    return app


_REFUSALS = sorted({
    "bad_request", "malformed_csr", "csr_signature_invalid", "key_not_accepted",
    "attestation_missing", "malformed_attestation", "attestation_untrusted",
    "attestation_key_mismatch", "malformed_evidence", "evidence_untrusted",
    "evidence_signature_invalid", "evidence_expired", "evidence_not_yet_valid",
    "evidence_not_bound", "evidence_reused",
})
_B64 = {"type": "string", "description": "base64 DER (or PEM)"}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "qsign CA", "version": "1"},
    "paths": {
        "/v1/enrol": {"post": {
            "summary": "Issue a qualified certificate (QCP-n-qscd) for an attested key",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/EnrolmentRequest"}}}},
            "responses": {
                "201": {"description": "issued", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Issued"}}}},
                "400": {"description": "malformed request", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
                "409": {"description": "evidence already used", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "422": {"description": "refused", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
            }}},
        "/v1/certificates/{serial}": {"get": {
            "parameters": [{"name": "serial", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{1,40}$"}}],
            "responses": {"200": {"description": "the certificate and its status"},
                          "404": {"description": "unknown serial"}}}},
        "/v1/certificates/{serial}/revoke": {"post": {
            "security": [{"bearer": []}],
            "parameters": [{"name": "serial", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{1,40}$"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["reason"], "additionalProperties": False,
                "properties": {"reason": {"enum": list(REVOCATION_REASONS)}}}}}},
            "responses": {"200": {"description": "revoked"}, "401": {"description": "no token"},
                          "404": {"description": "unknown serial"}}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "EnrolmentRequest": {
                "type": "object", "required": ["csr", "attestation", "evidence"],
                "additionalProperties": False,
                "properties": {
                    "csr": {**_B64, "description": "PKCS#10, signed by the key"},
                    "attestation": {"type": "array", "minItems": 2, "maxItems": 4,
                                    "items": _B64, "description": "the key's attestation "
                                    "certificate, then the device's"},
                    "evidence": {"type": "string", "description": "identity evidence: "
                                 "compact JWS (ES256/ES384) from a trusted identity service"},
                }},
            "Issued": {"type": "object", "properties": {
                "serial": {"type": "string"}, "certificate": _B64,
                "chain": {"type": "array", "items": _B64},
                "not_after": {"type": "string", "format": "date-time"}}},
            "Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string", "enum": [*_REFUSALS, "too_large", "internal"]},
                "message": {"type": "string"}}},
        },
    },
}

