"""The requester's actions on a transaction (portal/API.md "Transaction parameters"):
read its parameters, cancel it, send a signer's invitation again, replace a signer who
has not signed. Viewers read; requesters and above act; each action is audited, and a
cancellation goes to the workspace's webhooks."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from portal.accounts import Role
from portal.audit import arecord
from portal.body_schema import openapi_request
from portal.errors import Code, PortalError
from portal.routes.parse import e164, read_body
from portal.routes.requester import scoped_transaction
from portal.routes.views import requester_transaction
from portal.store import NewSigner, SignerStatus, TxStatus

log = logging.getLogger(__name__)

CANCEL = openapi_request("/api/v1/transactions/{id}/cancel", "post")
REPLACE = openapi_request("/api/v1/transactions/{id}/signers/{signer}", "put")


async def transaction_parameters(request: web.Request) -> web.Response:
    portal, _, tx = await scoped_transaction(request, Role.VIEWER)
    kept = await asyncio.to_thread(portal.store.parameters, tx.id)
    return web.json_response({
        **kept.to_json(), "level": tx.level, "qualified": tx.qualified,
        "messaging": tx.messaging, "templateId": kept.template_id,
        "cancelReason": kept.cancel_reason,
        "signers": [{"id": s.id, "order": s.position + 1, "turn": s.turn,
                     "appearance": (kept.appearances[s.position].to_json()
                                    if s.position in kept.appearances else None)}
                    for s in tx.signers]})


async def cancel_transaction(request: web.Request) -> web.Response:
    portal, who, tx = await scoped_transaction(request, Role.REQUESTER)
    reason = ((await read_body(request, CANCEL)).get("reason") or "").strip() or None
    tx = await asyncio.to_thread(portal.store.cancel, tx.id, reason)
    await arecord(portal.store.db, actor=who.actor, action="transaction.cancel",
                  subject=f"transaction:{tx.id}", details={"reason": reason or ""})
    await portal.webhooks.emit(tx, "cancelled")
    log.info("transaction %s cancelled", tx.id)
    return web.json_response(await requester_transaction(portal, tx))


async def resend_invitation(request: web.Request) -> web.Response:
    portal, who, tx = await scoped_transaction(request, Role.REQUESTER)
    signer = tx.signer(request.match_info["signer"])
    if tx.status is not TxStatus.OPEN:
        raise PortalError(Code.TRANSACTION_CLOSED, f"this transaction is {tx.status}")
    if signer.status is SignerStatus.WAITING:
        raise PortalError(Code.NOT_YOUR_TURN, "this signer's turn has not come: they are "
                          "invited when it does")
    if signer.status in (SignerStatus.SIGNED, SignerStatus.REFUSED):
        raise PortalError(Code.ALREADY_SIGNED if signer.status is SignerStatus.SIGNED
                          else Code.TRANSACTION_CLOSED, f"this signer has {signer.status}")
    await portal.invite(tx, signer)
    await arecord(portal.store.db, actor=who.actor, action="signer.resend",
                  subject=f"transaction:{tx.id}", details={"signer": signer.id})
    return web.json_response(await requester_transaction(portal, tx))


async def replace_signer(request: web.Request) -> web.Response:
    portal, who, tx = await scoped_transaction(request, Role.REQUESTER)
    fields = await read_body(request, REPLACE)
    new = NewSigner(fields.get("name", "").strip(), fields["email"].strip(),
                    e164(fields.get("phone", "")),
                    fields.get("lang", portal.config.default_lang))
    old = tx.signer(request.match_info["signer"])
    tx, signer = await asyncio.to_thread(portal.store.replace_signer, tx.id, old.id, new)
    if signer.status is not SignerStatus.WAITING:
        await portal.invite(tx, signer)  # their turn: the new person gets the new link
    await arecord(portal.store.db, actor=who.actor, action="signer.replace",
                  subject=f"transaction:{tx.id}",
                  details={"signer": signer.id, "from": old.email, "to": signer.email})
    return web.json_response(await requester_transaction(portal, tx))
