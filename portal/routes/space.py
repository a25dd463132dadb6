"""Personal Space (portal/API.md "Personal Space", `/api/me...`): the e-mailed link asks
an SMS code, the code opens a one-hour session, the session lists the signer's signed
documents and certificates."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets

from aiohttp import web

from portal.body_schema import BodySchema, closed, text
from portal.errors import Code, PortalError
from portal.routes.access import space_link, space_owner
from portal.routes.parse import iso, read_body
from portal.routes.state import Portal
from portal.routes.views import pdf_response
from portal.store import Document, SignerStatus, TxStatus
from portal.translations import N_, translate

SPACE_SESSION = dt.timedelta(hours=1)
_SPACE_CODE_TEXT = N_("qsign: {code} opens your Personal Space. Valid 5 minutes. "
                      "Never share it.")
CODE_ENTERED = BodySchema(closed({"otpSession": text(64), "code": text(12)},
                                 required=["otpSession", "code"]))


async def space_otp(request: web.Request) -> web.Response:
    portal, email = space_link(request)
    records = await asyncio.to_thread(portal.store.signer_records, email)
    phones = [s.phone for _, s in records if s.phone]
    lang = records[-1][1].lang if records else "en"  # as the signer last chose
    if not phones:
        raise PortalError(Code.NO_PHONE, "no phone number on file for this address")
    await asyncio.to_thread(portal.otp.space_wait, email, phones[-1])
    otp_id = await asyncio.to_thread(portal.store.new_otp_session, purpose="space",
                                     subject=email, phone=phones[-1], hashes=[])
    sent = await asyncio.to_thread(
        portal.otp.send, otp_id, [], translate(lang, _SPACE_CODE_TEXT))
    return web.json_response({"otpSession": otp_id, "phoneMasked": sent.phone_masked,
                              "expiresIn": sent.expires_in})


async def space_session(request: web.Request) -> web.Response:
    portal, email = space_link(request)
    fields = await read_body(request, CODE_ENTERED)
    session = await asyncio.to_thread(portal.otp.verify, fields["otpSession"].strip(),
                                      fields["code"].strip(), [])
    if session.purpose != "space" or session.subject != email:
        raise PortalError(Code.SESSION_UNKNOWN)
    token = secrets.token_urlsafe(32)
    await asyncio.to_thread(portal.store.add_space_session,
                            hashlib.sha256(token.encode()).hexdigest(), email,
                            portal.store.clock() + SPACE_SESSION)
    return web.json_response({"session": token,
                              "expiresIn": int(SPACE_SESSION.total_seconds())})


async def space_get(request: web.Request) -> web.Response:
    portal, email = await space_owner(request)
    records = await asyncio.to_thread(portal.store.signer_records, email)
    documents = []
    for tx, signer in records:
        if signer.status is not SignerStatus.SIGNED:
            continue
        for doc in tx.documents:
            documents.append({"transactionId": tx.id, "title": tx.title, "docId": doc.id,
                              "name": doc.name, "signedAt": iso(signer.signed_at),
                              "complete": tx.status is TxStatus.COMPLETED,
                              "url": f"/api/me/documents/{tx.id}/{doc.id}"})
    ders = await asyncio.to_thread(portal.store.certificates_of, email)
    certificates = [await portal.desk.describe(der, list(chain)) for der, chain in ders]
    name = next((s.name for _, s in reversed(records) if s.name), "")
    return web.json_response({"name": name, "email": email, "documents": documents,
                              "certificates": certificates})


async def signed_document(request: web.Request) -> tuple[Portal, Document]:
    """`{tx}`'s document `{doc}`, if the session's owner signed that transaction."""
    portal, email = await space_owner(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["tx"])
    if not any(s.email.lower() == email and s.status is SignerStatus.SIGNED
               for s in tx.signers):
        raise PortalError(Code.NOT_FOUND, "no such document")
    return portal, tx.document(request.match_info["doc"])


async def space_document(request: web.Request) -> web.Response:
    portal, doc = await signed_document(request)
    return await pdf_response(portal, doc.current.sha256, doc.name)
