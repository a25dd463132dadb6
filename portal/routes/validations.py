"""The validation service over HTTP (portal/API.md "Validation"): anyone may validate a
signed PDF (`POST /api/v1/validations`, the page /validate; no account, counted per
client address; its report fetched again by the same address for a few minutes,
`GET /api/v1/validations/{sha256}`), and the requester and the signers read the report
of each document signed here (`.../documents/{doc}/validation`). One report, three
forms, by `Accept`: JSON (default), `application/xml` (ETSI TS 119 102-2),
`application/pdf` (sealed).

An upload is read as it arrives and refused once past `max_document_bytes`: a raw
`application/pdf` body, one `file` part of `multipart/form-data`, or the JSON document
shape of the requester API (`{"name", "content"}`, base64)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import BodyPartReader, web

from portal.accounts import Role
from portal.body_schema import openapi_request
from portal.document_names import document_name
from portal.errors import Code, PortalError
from portal.routes.parse import b64, read_body
from portal.routes.requester import scoped_transaction
from portal.routes.space import signed_document
from portal.routes.state import PORTAL, Portal
from portal.validating import ValidationDesk
from validation import FileReport

VALIDATION = web.AppKey("validation", ValidationDesk)
NEW_VALIDATION = openapi_request("/api/v1/validations", "post")
CHUNK = 64 * 1024
DEFAULT_NAME = "document.pdf"
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TYPES = {"json": "application/json", "xml": "application/xml", "pdf": "application/pdf"}


async def create_validation(request: web.Request) -> web.StreamResponse:
    desk = request.app[VALIDATION]
    async with desk.upload_slot():  # refused at once when all are held, not counted
        await asyncio.to_thread(desk.admit, request.remote)
        name, data = await _upload(request, request.app[PORTAL].config.max_document_bytes)
        if not data:
            raise PortalError(Code.NOT_A_PDF, "the body is empty: send the PDF")
        report = await desk.validate(data, name)
    await asyncio.to_thread(desk.remember, request.remote, report)
    return await answer(request, report)


async def recent_validation(request: web.Request) -> web.StreamResponse:
    """The report this client address had of the file (its SHA-256) in the last minutes,
    in any form: the page's XML and PDF buttons, without sending the file again."""
    sha256 = request.match_info["sha256"]
    if not SHA256.fullmatch(sha256):
        raise PortalError(Code.NOT_FOUND, "not a SHA-256 (64 hexadecimal digits)")
    report = await asyncio.to_thread(request.app[VALIDATION].recent, request.remote, sha256)
    return await answer(request, report)


async def requester_validation(request: web.Request) -> web.StreamResponse:
    portal, _, tx = await scoped_transaction(request, Role.VIEWER)  # issue 15: by workspace
    doc = tx.document(request.match_info["doc"])
    return await _stored(request, portal, doc.current.sha256, doc.name)


async def space_validation(request: web.Request) -> web.StreamResponse:
    portal, doc = await signed_document(request)
    return await _stored(request, portal, doc.current.sha256, doc.name)


async def _stored(request: web.Request, portal: Portal, sha256: str, name: str
                  ) -> web.StreamResponse:
    async def load() -> bytes:
        return await asyncio.to_thread(portal.blobs.get, sha256)

    return await answer(request, await request.app[VALIDATION].of_document(sha256, name, load))


def wanted(request: web.Request) -> str:
    """'json', 'xml' or 'pdf', from `Accept` (the first of those named; JSON else)."""
    for item in request.headers.get("Accept", "").split(","):
        kind = item.split(";")[0].strip().lower()
        for short, media in _TYPES.items():
            if kind == media or (short == "xml" and kind == "text/xml"):
                return short
    return "json"


async def answer(request: web.Request, report: FileReport) -> web.StreamResponse:
    kind = wanted(request)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", report.name.rsplit(".", 1)[0])[:100] or "document"
    disposition = {"Content-Disposition": f'attachment; filename="{stem}-validation.{kind}"'}
    if kind == "xml":
        return web.Response(body=report.to_xml(), content_type="application/xml",
                            charset="utf-8", headers=disposition)
    if kind == "pdf":
        return web.Response(body=await request.app[VALIDATION].sealed_pdf(report),
                            content_type="application/pdf", headers=disposition)
    body: dict[str, Any] = report.to_json()
    return web.json_response(body)


async def _upload(request: web.Request, limit: int) -> tuple[str, bytes]:
    """The uploaded PDF's name and bytes, refused with PAYLOAD_TOO_LARGE past `limit`."""
    kind = request.content_type
    if kind == "application/json":
        fields = await read_body(request, NEW_VALIDATION)
        return (document_name(fields.get("name", DEFAULT_NAME), "name"),
                b64(fields["content"], "content", limit))
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise PortalError(Code.PAYLOAD_TOO_LARGE, f"at most {limit} bytes")
    if kind == "application/pdf":
        name = document_name(request.query.get("name", DEFAULT_NAME), "name")
        return name, await _bounded(request.content.iter_chunked(CHUNK), limit)
    if kind == "multipart/form-data":
        reader = await request.multipart()
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != "file":
            raise PortalError(Code.BAD_REQUEST, "send the PDF as the form's 'file' part")
        name = document_name(part.filename or DEFAULT_NAME, "file")
        return name, await _bounded(_part_chunks(part), limit)
    raise PortalError(Code.UNSUPPORTED_MEDIA_TYPE, "send application/pdf, "
                      "multipart/form-data or application/json")


async def _part_chunks(part: BodyPartReader) -> Any:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _bounded(chunks: Any, limit: int) -> bytes:
    received = bytearray()
    try:
        async for chunk in chunks:
            received += chunk
            if len(received) > limit:
                raise PortalError(Code.PAYLOAD_TOO_LARGE, f"at most {limit} bytes")
    except ConnectionResetError:  # the client went away, or was cut off as too slow
        raise PortalError(Code.BAD_REQUEST, "the body did not arrive whole") from None
    return bytes(received)
