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

from portal.audit import arecord
from portal.body_schema import openapi_request
from portal.document_names import document_name
from portal.errors import Code, PortalError
from portal.intake import content_policy, record
from portal.intake import inspect as inspect_document
from portal.routes.access import requester
from portal.routes.parse import b64, e164, iso, read_body
from portal.routes.views import message_json, pdf_response, transaction_json
from portal.store import NewDocument, NewSigner, SignerStatus

log = logging.getLogger(__name__)

NEW_TRANSACTION = openapi_request("/api/v1/transactions", "post")
NEW_MESSAGE = openapi_request("/api/v1/transactions/{id}/messages", "post")


async def create_transaction(request: web.Request) -> web.Response:
    portal = requester(request)
    body = await read_body(request, NEW_TRANSACTION)
    new_docs = []
    policy = content_policy(body)
    for i, doc in enumerate(body["documents"]):
        name = document_name(doc["name"], f"documents[{i}].name")
        data = b64(doc["content"], f"documents[{i}].content",
                   portal.config.max_document_bytes)
        found = await asyncio.to_thread(inspect_document, data, i, policy)
        sha = await asyncio.to_thread(portal.blobs.put, data)
        await asyncio.to_thread(record, portal.store.db, sha, found.content)
        new_docs.append(NewDocument(name, sha, len(data), found.pages))
    new_signers = [NewSigner(s.get("name", "").strip(), s["email"].strip(),
                             e164(s.get("phone", "")), s.get("lang", portal.config.default_lang))
                   for s in body["signers"]]
    level = body.get("level", "B-LT")
    if level != "B-B" and not portal.config.timestamp_url:
        raise PortalError(Code.BAD_REQUEST, f"level {level} needs a time-stamping service "
                          "(portal.timestamp_url)")
    days, requester_ = int(body.get("expiresInDays", 14)), body["requester"]
    tx = await asyncio.to_thread(
        portal.store.create_transaction, title=body["title"].strip(),
        requester_name=requester_["name"].strip(),
        requester_email=requester_["email"].strip(), documents=new_docs,
        signers=new_signers, sequential=body.get("sequential", True),
        expires_in=dt.timedelta(days=days), qualified=body.get("qualified", True),
        messaging=body.get("messaging", True), level=level)
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
    await arecord(portal.store.db, actor="requester", action="document.download",
                  subject=f"transaction:{tx.id}",
                  details={"document": doc.id, "version": doc.current.version})
    return await pdf_response(portal, doc.current.sha256, doc.name)


async def requester_messages(request: web.Request) -> web.Response:
    portal = requester(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["id"])
    if request.method == "GET":
        messages = await asyncio.to_thread(portal.store.messages, tx.id)
        return web.json_response({"messages": [message_json(m) for m in messages]})
    text = (await read_body(request, NEW_MESSAGE))["text"].strip()
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
