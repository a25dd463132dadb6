"""The requester's REST API (portal/API.md "Requester API", `/api/v1/...`): create and
follow transactions, download documents, talk with signers; the testers' outbox and the
OpenAPI document.

Each transaction route is served twice: under `/api/v1/workspaces/{ws}/transactions`
(a member of that workspace: viewers read, requesters and above create and write), and
under `/api/v1/transactions` for a principal with one workspace in scope (an API token,
bound to its workspace) or the service administrator (every workspace). A transaction
of another workspace is NOT_FOUND, as one that does not exist."""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources

from aiohttp import web

from portal.accounts import Principal, Role
from portal.audit import arecord
from portal.body_schema import openapi_request
from portal.errors import Code, PortalError
from portal.routes.access import accounts_of, member, principal, service_admin
from portal.routes.parse import e164, iso, read_body
from portal.routes.sending import Outline, parameters_of, send, take_documents
from portal.routes.state import PORTAL, Portal
from portal.routes.views import (
    message_json,
    pdf_response,
    requester_transaction,
    requester_transactions,
)
from portal.store import NewSigner, SignerStatus, Transaction
from portal.store.transactions import DEFAULT_WORKSPACE

log = logging.getLogger(__name__)

NEW_TRANSACTION = openapi_request("/api/v1/transactions", "post")
NEW_MESSAGE = openapi_request("/api/v1/transactions/{id}/messages", "post")


async def scope(request: web.Request, need: Role
                ) -> tuple[Portal, Principal, str | None, Role]:
    """The portal, the principal, the workspace the request works in (None: the
    service administrator on `/api/v1/transactions`, every workspace) and their role
    there (the service administrator: an owner of every workspace)."""
    if "ws" in request.match_info:
        portal, who, role = await member(request, request.match_info["ws"], need)
        return portal, who, request.match_info["ws"], role
    who = await principal(request)
    if who.token_workspace is not None:
        portal, who, role = await member(request, who.token_workspace, need)
        return portal, who, who.token_workspace, role
    if who.is_service_admin:
        return request.app[PORTAL], who, None, Role.OWNER
    raise PortalError(Code.NOT_FOUND, "use /api/v1/workspaces/{ws}/transactions")


async def scoped_transaction(request: web.Request, need: Role
                             ) -> tuple[Portal, Principal, Transaction]:
    """The transaction `{id}` if it belongs to the request's workspace (NOT_FOUND
    otherwise, as if it did not exist)."""
    portal, who, workspace, _ = await scope(request, need)
    tx_id = request.match_info["id"]
    if workspace is not None and await asyncio.to_thread(
            accounts_of(portal).workspace_of_transaction, tx_id) != workspace:
        raise PortalError(Code.NOT_FOUND, "no such transaction")
    return portal, who, await asyncio.to_thread(portal.store.transaction, tx_id)


async def create_transaction(request: web.Request) -> web.Response:
    portal, who, workspace, _ = await scope(request, Role.REQUESTER)
    body = await read_body(request, NEW_TRANSACTION)
    if "workspace" in body:  # the service administrator's choice; a member's own only
        named = body["workspace"]
        if workspace is None:
            await asyncio.to_thread(accounts_of(portal).workspace, named)  # NOT_FOUND
        elif named != workspace:
            raise PortalError(Code.NOT_FOUND, "workspace: no such workspace")
        workspace = named
    parameters, turns = parameters_of(body, body["signers"])  # portal/routes/sending.py
    new_docs = await take_documents(portal, body)
    new_signers = [NewSigner(s.get("name", "").strip(), s["email"].strip(),
                             e164(s.get("phone", "")), s.get("lang", portal.config.default_lang))
                   for s in body["signers"]]
    requester_ = body["requester"]
    tx = await send(portal, Outline(
        workspace_id=workspace or DEFAULT_WORKSPACE,
        created_by=None if who.via == "bootstrap" else who.user_id,
        title=body["title"].strip(), requester_name=requester_["name"].strip(),
        requester_email=requester_["email"].strip(), documents=tuple(new_docs),
        level=body.get("level", "B-LT"), days=int(body.get("expiresInDays", 14)),
        qualified=body.get("qualified", True), messaging=body.get("messaging", True)),
        new_signers, parameters, turns)
    log.info("transaction %s created: %d document(s), %d signer(s)", tx.id,
             len(tx.documents), len(tx.signers))
    return web.json_response(await requester_transaction(portal, tx), status=201)


async def list_transactions(request: web.Request) -> web.Response:
    portal, _, workspace, role = await scope(request, Role.VIEWER)
    if workspace is None:
        txs = await asyncio.to_thread(portal.store.transactions)
    else:
        ids = await asyncio.to_thread(accounts_of(portal).transaction_ids, workspace)
        txs = [await asyncio.to_thread(portal.store.transaction, tx_id) for tx_id in ids]
    # The caller's role: a page offers only what it may do (portal/API.md).
    return web.json_response({"transactions": await requester_transactions(portal, txs),
                              "role": role.label})


async def get_transaction(request: web.Request) -> web.Response:
    portal, _, tx = await scoped_transaction(request, Role.VIEWER)
    return web.json_response(await requester_transaction(portal, tx))


async def requester_document(request: web.Request) -> web.Response:
    portal, who, tx = await scoped_transaction(request, Role.VIEWER)
    doc = tx.document(request.match_info["doc"])
    await arecord(portal.store.db, actor=who.actor, action="document.download",
                  subject=f"transaction:{tx.id}",
                  details={"document": doc.id, "version": doc.current.version})
    return await pdf_response(portal, doc.current.sha256, doc.name)


async def requester_messages(request: web.Request) -> web.Response:
    need = Role.VIEWER if request.method == "GET" else Role.REQUESTER
    portal, _, tx = await scoped_transaction(request, need)
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
    """The SMS and mails sent, for testers: the service administrator only (bootstrap
    token, or an account marked administrator), as they hold every signer's codes."""
    portal, _ = await service_admin(request)
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
