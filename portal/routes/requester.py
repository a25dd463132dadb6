"""The requester's REST API (portal/API.md "Requester API", `/api/v1/...`): create and
follow transactions, download documents, talk with signers; the testers' outbox and the
OpenAPI document. Every route but the OpenAPI document needs the requester's token."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from importlib import resources

from aiohttp import web

from portal import legal
from portal.document_names import document_name
from portal.errors import Code, PortalError
from portal.intake import content_policy, record
from portal.intake import inspect as inspect_document
from portal.routes.access import requester
from portal.routes.parse import b64, boolean, email, iso, phone, read_body, string
from portal.routes.views import message_json, pdf_response, transaction_json
from portal.store import NewDocument, NewSigner, SignerStatus

log = logging.getLogger(__name__)

LEVELS = ("B-B", "B-T", "B-LT")


async def create_transaction(request: web.Request) -> web.Response:
    portal = requester(request)
    body = await read_body(request)
    title = string(body, "title")
    requester_ = body.get("requester")
    if not isinstance(requester_, dict):
        raise PortalError(Code.BAD_REQUEST, "requester: {name, email}")
    requester_name = string(requester_, "name", where="requester.")
    requester_email = email(requester_, where="requester.")
    docs = body.get("documents")
    if not isinstance(docs, list) or not 1 <= len(docs) <= 20:
        raise PortalError(Code.BAD_REQUEST, "documents: 1 to 20 PDFs")
    new_docs = []
    policy = content_policy(body)
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise PortalError(Code.BAD_REQUEST, f"documents[{i}]: {{name, content}}")
        name = document_name(doc.get("name"), f"documents[{i}].name")
        data = b64(doc.get("content"), f"documents[{i}].content",
                   portal.config.max_document_bytes)
        found = await asyncio.to_thread(inspect_document, data, i, policy)
        sha = await asyncio.to_thread(portal.blobs.put, data)
        await asyncio.to_thread(record, portal.store.db, sha, found.content)
        new_docs.append(NewDocument(name, sha, len(data), found.pages))
    signers = body.get("signers")
    if not isinstance(signers, list) or not 1 <= len(signers) <= 20:
        raise PortalError(Code.BAD_REQUEST, "signers: 1 to 20")
    new_signers = []
    for i, s in enumerate(signers):
        where = f"signers[{i}]."
        if not isinstance(s, dict):
            raise PortalError(Code.BAD_REQUEST, f"signers[{i}]: an object")
        address = email(s, where=where)
        number = phone(s, required=False, where=where)
        lang = s.get("lang", portal.config.default_lang)
        if lang not in legal.LANGS:
            raise PortalError(Code.BAD_REQUEST, f"{where}lang: 'en' or 'fr'")
        new_signers.append(NewSigner(string(s, "name", required=False, where=where),
                                     address, number, lang))
    days = body.get("expiresInDays", 14)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 90:
        raise PortalError(Code.BAD_REQUEST, "expiresInDays: 1 to 90")
    level = body.get("level", "B-LT")
    if level not in LEVELS:
        raise PortalError(Code.BAD_REQUEST, "level: B-B, B-T or B-LT")
    if level != "B-B" and not portal.config.timestamp_url:
        raise PortalError(Code.BAD_REQUEST, f"level {level} needs a time-stamping service "
                          "(portal.timestamp_url)")
    tx = await asyncio.to_thread(
        portal.store.create_transaction, title=title, requester_name=requester_name,
        requester_email=requester_email, documents=new_docs, signers=new_signers,
        sequential=boolean(body, "sequential", True), expires_in=dt.timedelta(days=days),
        qualified=boolean(body, "qualified", True),
        messaging=boolean(body, "messaging", True), level=level)
    for signer in tx.signers:
        if signer.status is SignerStatus.INVITED:
            await portal.invite(tx, signer)
    log.info("transaction %s created: %d document(s), %d signer(s)", tx.id,
             len(tx.documents), len(tx.signers))
    return web.json_response(transaction_json(portal, tx, for_requester=True), status=201)


async def list_transactions(request: web.Request) -> web.Response:
    portal = requester(request)
    txs = await asyncio.to_thread(portal.store.transactions)
    return web.json_response({"transactions": [
        transaction_json(portal, tx, for_requester=True) for tx in txs]})


async def get_transaction(request: web.Request) -> web.Response:
    portal = requester(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["id"])
    return web.json_response(transaction_json(portal, tx, for_requester=True))


async def requester_document(request: web.Request) -> web.Response:
    portal = requester(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["id"])
    doc = tx.document(request.match_info["doc"])
    return await pdf_response(portal, doc.current.sha256, doc.name)


async def requester_messages(request: web.Request) -> web.Response:
    portal = requester(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["id"])
    if request.method == "GET":
        messages = await asyncio.to_thread(portal.store.messages, tx.id)
        return web.json_response({"messages": [message_json(m) for m in messages]})
    text = string(await read_body(request), "text", max_len=2000)
    message = await asyncio.to_thread(portal.store.add_message, tx.id, author="requester",
                                      name=tx.requester_name, text=text)
    for signer in tx.signers:
        if signer.status not in (SignerStatus.WAITING, SignerStatus.SIGNED):
            await portal.mail(signer.email, "message", signer.lang, name=tx.requester_name,
                              title=tx.title, text=text)
    return web.json_response(message_json(message), status=201)


async def outbox(request: web.Request) -> web.Response:
    """The SMS and mails sent, for testers (the requester's token)."""
    portal = requester(request)
    to = request.query.get("to")
    sms = await asyncio.to_thread(portal.store.sms, to)
    mails = await asyncio.to_thread(portal.store.mails, to=to)
    return web.json_response({
        "sms": [{"to": t, "text": text, "at": iso(at)} for t, text, at in sms],
        "mail": [{"to": m.to, "subject": m.subject, "body": m.body, "at": iso(m.at),
                  "sentAt": iso(m.sent_at), "lastError": m.last_error} for m in mails]})


async def openapi(request: web.Request) -> web.Response:
    spec = json.loads((resources.files("portal") / "openapi.json").read_text())
    return web.json_response(spec)
