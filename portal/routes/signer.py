"""The signer's steps (portal/API.md "Signer API", `/api/s/{invite}/...`): consent to the
texts, read and download the documents, accept or refuse them, message the requester,
then the two calls around the agent's signature (prepare, complete). The invitation link
is the credential; state-changing calls pass the cross-site check (portal/cross_site.py)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from portal import legal, render
from portal.body_schema import BodySchema, base64_string, closed, text
from portal.document_names import zip_documents
from portal.errors import Code, PortalError
from portal.routes.access import invite
from portal.routes.parse import (
    CERTIFICATE_FIELDS,
    accepted_texts,
    b64_list,
    certificate_and_chain,
    consent_records,
    read_body,
)
from portal.routes.state import Portal
from portal.routes.views import message_json, pdf_response, signer_view
from portal.store import SignerStatus, Transaction, TxStatus

log = logging.getLogger(__name__)

CONSENTS = BodySchema(closed({"accepted": accepted_texts(legal.KINDS)}, required=["accepted"]))
REFUSAL = BodySchema(closed({"reason": text(1000)}, required=["reason"]))
MESSAGE = BodySchema(closed({"text": text(2000)}, required=["text"]))
CERTIFICATE = BodySchema(closed(CERTIFICATE_FIELDS, required=["certificate"]))
PREPARE = BodySchema(closed({**CERTIFICATE_FIELDS, "phoneConfirmed": {
    "type": "boolean", "const": True, "description": "confirm the phone number first"}},
    required=["certificate", "phoneConfirmed"]))
COMPLETE = BodySchema(closed({
    "sessionId": text(64),
    "signatures": {"type": "array", "minItems": 1, "maxItems": 20,
                   "items": base64_string(1024)},
}, required=["sessionId", "signatures"]))


async def signer_get(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    view = await signer_view(portal, signer_id, generation, request.query.get("lang"))
    await portal.webhooks.viewed(signer_id)  # once per signer (portal/webhooks.py)
    return web.json_response(view)


async def signer_consents(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    records = consent_records((await read_body(request, CONSENTS))["accepted"])
    if sorted(r[0] for r in records) != sorted(legal.KINDS):
        raise PortalError(Code.BAD_REQUEST, "both the policy and the terms must be accepted")
    await asyncio.to_thread(portal.store.record_consents, signer_id, generation, records)
    return web.json_response(await signer_view(portal, signer_id, generation))


async def _unsigned_allowed(portal: Portal, signer_id: str, generation: int
                            ) -> Transaction:
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    if signer.status is SignerStatus.INVITED:
        raise PortalError(Code.WRONG_STEP, "accept the policy and terms first")
    if signer.status in (SignerStatus.ACCEPTED, SignerStatus.SIGNED):
        raise PortalError(Code.ALREADY_ACCEPTED)
    if not (await asyncio.to_thread(portal.store.parameters, tx.id)).download_unsigned:
        raise PortalError(Code.DOWNLOAD_DISABLED, "the requester does not let signers "
                          "download the unsigned documents")
    return tx


async def signer_page_image(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    if signer.status is SignerStatus.INVITED:
        raise PortalError(Code.WRONG_STEP, "accept the policy and terms first")
    doc = tx.document(request.match_info["doc"])
    try:
        number = int(request.match_info["n"])
        width = int(request.query.get("width", "800"))
    except ValueError:
        raise PortalError(Code.BAD_REQUEST, "page and width are numbers") from None
    data = await asyncio.to_thread(portal.blobs.get, doc.current.sha256)
    png = await asyncio.to_thread(render.page_png, data, number, width)
    return web.Response(body=png, content_type="image/png",
                        headers={"Cache-Control": "private, max-age=600"})


async def signer_download(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    tx = await _unsigned_allowed(portal, signer_id, generation)
    doc = tx.document(request.match_info["doc"])
    return await pdf_response(portal, doc.current.sha256, doc.name)


async def _zip_response(portal: Portal, tx: Transaction, filename: str) -> web.Response:
    """The transaction's documents as they stand now, one ZIP attachment."""
    def build() -> bytes:
        return zip_documents((doc.name, doc.position, portal.blobs.get(doc.current.sha256))
                             for doc in tx.documents)

    data = await asyncio.to_thread(build)
    return web.Response(body=data, content_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


async def signer_zip(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    tx = await _unsigned_allowed(portal, signer_id, generation)
    return await _zip_response(portal, tx, "documents.zip")


async def signer_signed_zip(request: web.Request) -> web.Response:
    """The documents as they stand after this signer's signature (every signature made
    so far; all of them once the transaction is completed): for a signer who signed."""
    portal, signer_id, generation = invite(request)
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    if signer.status is not SignerStatus.SIGNED:
        raise PortalError(Code.WRONG_STEP, "sign the documents first")
    return await _zip_response(portal, tx, "signed-documents.zip")


async def signer_accept(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    _, before = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    await asyncio.to_thread(portal.store.accept, signer_id, generation)
    if before.status is SignerStatus.CONSENTED:  # accepted now, not a repeat
        tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
        await portal.webhooks.emit(tx, "accepted", signer)
    return web.json_response(await signer_view(portal, signer_id, generation))


async def signer_restart(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    new_generation = await asyncio.to_thread(portal.store.restart, signer_id, generation)
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id,
                                         new_generation)
    await portal.invite(tx, signer, replaces=True)  # the new link also reaches the mailbox
    return web.json_response({"inviteUrl": portal.invite_url(tx, signer)})


async def signer_refuse(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    reason = (await read_body(request, REFUSAL))["reason"].strip()
    tx = await asyncio.to_thread(portal.store.refuse, signer_id, generation, reason)
    signer = tx.signer(signer_id)
    await portal.mail_requester(tx, "refused", name=signer.name or signer.email,
                                title=tx.title, reason=reason)
    log.info("signer %s refused transaction %s", signer_id, tx.id)
    await portal.webhooks.emit(tx, "refused", signer)
    return web.json_response(await signer_view(portal, signer_id, generation))


async def signer_messages(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    if not tx.messaging:
        raise PortalError(Code.MESSAGING_DISABLED)
    if request.method == "GET":
        messages = await asyncio.to_thread(portal.store.messages, tx.id)
        return web.json_response({"messages": [message_json(m) for m in messages]})
    said = (await read_body(request, MESSAGE))["text"].strip()
    message = await asyncio.to_thread(
        portal.store.add_message, tx.id, author="signer", signer_id=signer_id,
        generation=generation, name=signer.name or signer.email, text=said)
    await portal.mail_requester(tx, "message", name=message.name, title=tx.title,
                                text=said)
    return web.json_response(message_json(message), status=201)


async def signer_check_certificate(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    certificate, chain = certificate_and_chain(await read_body(request, CERTIFICATE))
    return web.json_response(await portal.desk.check_for_signer(signer_id, generation,
                                                                certificate, chain))


async def signer_prepare(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    certificate, chain = certificate_and_chain(await read_body(request, PREPARE))
    return web.json_response(await portal.desk.prepare(signer_id, generation, certificate,
                                                       chain))


async def signer_complete(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    fields = await read_body(request, COMPLETE)
    signatures = b64_list(fields["signatures"], "signatures")
    done = await portal.desk.complete(signer_id, generation, fields["sessionId"].strip(),
                                      signatures)
    tx = done.transaction
    if done.stored:
        await portal.webhooks.emit(tx, "signed", tx.signer(signer_id))
        if tx.status is TxStatus.COMPLETED:
            await portal.webhooks.emit(tx, "completed")
    for next_signer in done.next_signers:  # their turn came
        await portal.invite(tx, next_signer)
    if done.stored and tx.status is TxStatus.COMPLETED:
        for signer in tx.signers:
            await portal.mail(signer.email, "completed", signer.lang,
                              name=signer.name or signer.email, title=tx.title,
                              url=portal.space_url(signer.email))
        await portal.mail_requester(tx, "completed-requester", name=tx.requester_name,
                                    title=tx.title, url=portal.transaction_url(tx))
    return web.json_response(await signer_view(portal, signer_id, generation))
