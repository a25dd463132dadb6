"""The signature service over HTTP (portal/API.md): the requester's REST API, the
signer's journey, the SMS OTP endpoints the agent calls, Personal Space, the testers'
outbox, and the pages (portal/web/).

Errors are mapped once (`_errors`): PortalError -> its status and JSON body; anything
else -> 500 INTERNAL with the details in the log only. Links in URLs are capabilities,
so every response says `Referrer-Policy: no-referrer` and API answers are not cached.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ground.files import write_atomically
from portal import legal, render
from portal.agent_auth import require_agent
from portal.blobs import BlobCorrupt, BlobMissing, BlobStore
from portal.config import PortalConfig
from portal.cross_site import same_origin_only
from portal.document_names import document_name, zip_documents
from portal.enrolment import EnrolmentDesk, b64_spki, enrolment_view
from portal.errors import Code, PortalError
from portal.identity.evidence import EvidenceSigner
from portal.identity.http import create_identity_app
from portal.identity.service import IdentityPolicy, IdentityProvider, ReferenceIdentityService
from portal.intake import content_policy, kinds_of, record
from portal.intake import inspect as inspect_document
from portal.json_body import read_json
from portal.links import LinkExpired, LinkInvalid, LinkSigner, Purpose
from portal.mail import Mailer, compose
from portal.otp import OutboxGateway, SmsGateway, SmsOtp, mask_phone
from portal.signing import SigningDesk
from portal.store import (
    Enrolment,
    EnrolmentStep,
    Message,
    NewDocument,
    NewSigner,
    Signer,
    SignerStatus,
    Store,
    Transaction,
    TxStatus,
)

log = logging.getLogger(__name__)

WEB = resources.files("portal") / "web"
SPACE_LINK_DAYS = 30
SPACE_SESSION = dt.timedelta(hours=1)
_EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]{1,255}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164


@dataclass
class Portal:
    """Everything a handler needs, built once per app."""

    config: PortalConfig
    store: Store
    blobs: BlobStore
    links: LinkSigner
    otp: SmsOtp
    mailer: Mailer
    desk: SigningDesk
    enrolment: EnrolmentDesk
    requester_token: str

    def invite_url(self, tx: Transaction, signer: Signer) -> str:
        token = self.links.make(Purpose.INVITE, signer.id, generation=signer.generation,
                                expires_at=int(tx.expires_at.timestamp()))
        return f"{self.config.base_url}/s/{token}"

    def space_url(self, email: str) -> str:
        expires = self.store.clock() + dt.timedelta(days=SPACE_LINK_DAYS)
        token = self.links.make(Purpose.SPACE, email.lower(),
                                expires_at=int(expires.timestamp()))
        return f"{self.config.base_url}/me/{token}"

    async def mail(self, to: str, kind: str, lang: str, **values: str) -> None:
        subject, body = compose(kind, lang, **values)
        await asyncio.to_thread(self.store.queue_mail, to, subject, body)
        self.mailer.wake()

    async def invite(self, tx: Transaction, signer: Signer) -> None:
        await self.mail(signer.email, "invite", signer.lang, name=signer.name or signer.email,
                        requester=tx.requester_name, title=tx.title,
                        expires=tx.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                        url=self.invite_url(tx, signer))


PORTAL = web.AppKey("portal", Portal)


def requester_token(state_dir: Path) -> str:
    path = state_dir / "requester.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, token.encode() + b"\n")
        return token


# Request parsing ----------------------------------------------------------------------

async def _body(request: web.Request) -> dict[str, Any]:
    return await read_json(request)  # the one JSON reader (portal/json_body.py)


def _str(body: dict[str, Any], key: str, *, max_len: int = 200, required: bool = True,
         where: str = "") -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_len:
        raise PortalError(Code.BAD_REQUEST, f"{where}{key}: a string of 1 to {max_len} "
                          "characters")
    return value.strip()


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise PortalError(Code.BAD_REQUEST, f"{key}: true or false")
    return value


def _b64(value: Any, what: str, max_bytes: int) -> bytes:
    if not isinstance(value, str) or len(value) > max_bytes * 4 // 3 + 8:
        raise PortalError(Code.BAD_REQUEST, f"{what}: base64, at most {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PortalError(Code.BAD_REQUEST, f"{what}: not base64") from None


def _b64_list(body: dict[str, Any], key: str, *, max_items: int, max_bytes: int
              ) -> list[bytes]:
    values = body.get(key)
    if not isinstance(values, list) or len(values) > max_items:
        raise PortalError(Code.BAD_REQUEST, f"{key}: a list of at most {max_items} items")
    return [_b64(v, f"{key}[{i}]", max_bytes) for i, v in enumerate(values)]


def _requester(request: web.Request) -> Portal:
    portal = request.app[PORTAL]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), portal.requester_token.encode()):
        raise PortalError(Code.UNAUTHORIZED)
    return portal


def _invite(request: web.Request) -> tuple[Portal, str, int]:
    portal = request.app[PORTAL]
    try:
        link = portal.links.open(Purpose.INVITE, request.match_info["invite"],
                                 now=portal.store.clock().timestamp())
    except LinkInvalid:
        raise PortalError(Code.LINK_INVALID) from None
    except LinkExpired:
        raise PortalError(Code.LINK_EXPIRED) from None
    return portal, link.subject, link.generation


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# JSON views -------------------------------------------------------------------------

def transaction_json(portal: Portal, tx: Transaction, *, for_requester: bool
                     ) -> dict[str, Any]:
    return {
        "id": tx.id, "title": tx.title, "status": tx.status.value,
        "createdAt": _iso(tx.created_at), "expiresAt": _iso(tx.expires_at),
        "sequential": tx.sequential, "qualified": tx.qualified, "messaging": tx.messaging,
        "level": tx.level,
        "requester": {"name": tx.requester_name, "email": tx.requester_email},
        "documents": [{"id": d.id, "name": d.name, "sha256": d.current.sha256,
                       "size": d.current.size, "pages": d.pages,
                       "signatures": len(d.versions) - 1} for d in tx.documents],
        "signers": [{
            "id": s.id, "name": s.name, "email": s.email, "phone": s.phone, "lang": s.lang,
            "order": s.position + 1, "status": s.status.value,
            "refusalReason": s.refusal_reason, "signedAt": _iso(s.signed_at),
            "inviteUrl": (portal.invite_url(tx, s) if for_requester
                          and s.status not in (SignerStatus.WAITING, SignerStatus.SIGNED)
                          and tx.status is TxStatus.OPEN else None),
        } for s in tx.signers],
    }


def message_json(message: Message) -> dict[str, Any]:
    return {"id": message.id, "author": message.author, "signerId": message.signer_id,
            "name": message.name, "text": message.text, "at": _iso(message.at)}


def _step(tx: Transaction, signer: Signer, enrolment: Enrolment | None = None) -> str:
    if signer.status is SignerStatus.SIGNED:
        return "done"
    if signer.status is SignerStatus.REFUSED:
        return "refused"
    if tx.status is not TxStatus.OPEN:
        return "closed"
    if (signer.status in (SignerStatus.CONSENTED, SignerStatus.ACCEPTED)
            and enrolment is not None and enrolment.step is not EnrolmentStep.DONE):
        return "enrolment"
    return {SignerStatus.WAITING: "waiting", SignerStatus.INVITED: "consent",
            SignerStatus.CONSENTED: "documents", SignerStatus.ACCEPTED: "sign"}[signer.status]


async def signer_view(portal: Portal, signer_id: str, generation: int,
                      lang: str | None = None) -> dict[str, Any]:
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    consents = await asyncio.to_thread(portal.store.consents, signer_id, generation)
    enrolment = await asyncio.to_thread(portal.store.enrolment, signer_id, generation)
    active = await asyncio.to_thread(kinds_of, portal.store.db,
                                     [d.original.sha256 for d in tx.documents])
    given = {(c.kind, c.version) for c in consents}
    shown_lang = lang if lang in legal.LANGS else signer.lang
    return {
        "transaction": {"id": tx.id, "title": tx.title,
                        "requester": {"name": tx.requester_name},
                        "messaging": tx.messaging, "level": tx.level,
                        "qualified": tx.qualified, "status": tx.status.value,
                        "expiresAt": _iso(tx.expires_at)},
        "signer": {"id": signer.id, "name": signer.name, "email": signer.email,
                   "phone": signer.phone, "phoneMasked": mask_phone(signer.phone),
                   "lang": signer.lang, "status": signer.status.value,
                   "refusalReason": signer.refusal_reason},
        "step": _step(tx, signer, enrolment),
        "enrolment": None if enrolment is None else enrolment_view(
            enrolment, signer, shown_lang, portal.desk.issuer_name, given),
        "consents": [{"kind": t.kind, "version": t.version, "sha256": t.sha256,
                      "lang": t.lang, "title": t.title,
                      "url": f"/legal/{t.kind}/{t.version}",
                      "accepted": (t.kind, t.version) in given}
                     for t in legal.current(shown_lang)],
        "documents": [{"id": d.id, "name": d.name, "pages": d.pages,
                       "sha256": d.current.sha256,
                       "activeContent": active.get(d.original.sha256, [])}
                      for d in tx.documents],
        "agent": {"port": portal.config.agent_port},
    }


# Requester API ----------------------------------------------------------------------

async def create_transaction(request: web.Request) -> web.Response:
    portal = _requester(request)
    body = await _body(request)
    title = _str(body, "title")
    requester = body.get("requester")
    if not isinstance(requester, dict):
        raise PortalError(Code.BAD_REQUEST, "requester: {name, email}")
    requester_name = _str(requester, "name", where="requester.")
    requester_email = _str(requester, "email", max_len=320, where="requester.")
    if not _EMAIL.match(requester_email):
        raise PortalError(Code.BAD_REQUEST, "requester.email: an e-mail address")
    docs = body.get("documents")
    if not isinstance(docs, list) or not 1 <= len(docs) <= 20:
        raise PortalError(Code.BAD_REQUEST, "documents: 1 to 20 PDFs")
    new_docs = []
    policy = content_policy(body)
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise PortalError(Code.BAD_REQUEST, f"documents[{i}]: {{name, content}}")
        name = document_name(doc.get("name"), f"documents[{i}].name")
        data = _b64(doc.get("content"), f"documents[{i}].content",
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
        email = _str(s, "email", max_len=320, where=where)
        if not _EMAIL.match(email):
            raise PortalError(Code.BAD_REQUEST, f"{where}email: an e-mail address")
        phone = _str(s, "phone", max_len=16, required=False, where=where).replace(" ", "")
        if phone and not _PHONE.match(phone):
            raise PortalError(Code.BAD_REQUEST, f"{where}phone: E.164, e.g. +33612345678")
        lang = s.get("lang", portal.config.default_lang)
        if lang not in legal.LANGS:
            raise PortalError(Code.BAD_REQUEST, f"{where}lang: 'en' or 'fr'")
        new_signers.append(NewSigner(_str(s, "name", required=False, where=where), email,
                                     phone, lang))
    days = body.get("expiresInDays", 14)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 90:
        raise PortalError(Code.BAD_REQUEST, "expiresInDays: 1 to 90")
    level = body.get("level", "B-LT")
    if level not in ("B-B", "B-T", "B-LT"):
        raise PortalError(Code.BAD_REQUEST, "level: B-B, B-T or B-LT")
    if level != "B-B" and not portal.config.timestamp_url:
        raise PortalError(Code.BAD_REQUEST, f"level {level} needs a time-stamping service "
                          "(portal.timestamp_url)")
    tx = await asyncio.to_thread(
        portal.store.create_transaction, title=title, requester_name=requester_name,
        requester_email=requester_email, documents=new_docs, signers=new_signers,
        sequential=_bool(body, "sequential", True), expires_in=dt.timedelta(days=days),
        qualified=_bool(body, "qualified", True), messaging=_bool(body, "messaging", True),
        level=level)
    for signer in tx.signers:
        if signer.status is SignerStatus.INVITED:
            await portal.invite(tx, signer)
    log.info("transaction %s created: %d document(s), %d signer(s)", tx.id,
             len(tx.documents), len(tx.signers))
    return web.json_response(transaction_json(portal, tx, for_requester=True), status=201)


async def list_transactions(request: web.Request) -> web.Response:
    portal = _requester(request)
    txs = await asyncio.to_thread(portal.store.transactions)
    return web.json_response({"transactions": [
        transaction_json(portal, tx, for_requester=True) for tx in txs]})


async def get_transaction(request: web.Request) -> web.Response:
    portal = _requester(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["id"])
    return web.json_response(transaction_json(portal, tx, for_requester=True))


async def _pdf(portal: Portal, sha: str, name: str, *, inline: bool = False
               ) -> web.Response:
    data = await asyncio.to_thread(portal.blobs.get, sha)
    disposition = "inline" if inline else "attachment"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return web.Response(body=data, content_type="application/pdf", headers={
        "Content-Disposition": f'{disposition}; filename="{safe}"'})


async def requester_document(request: web.Request) -> web.Response:
    portal = _requester(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["id"])
    doc = tx.document(request.match_info["doc"])
    return await _pdf(portal, doc.current.sha256, doc.name)


async def requester_messages(request: web.Request) -> web.Response:
    portal = _requester(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["id"])
    if request.method == "GET":
        messages = await asyncio.to_thread(portal.store.messages, tx.id)
        return web.json_response({"messages": [message_json(m) for m in messages]})
    text = _str(await _body(request), "text", max_len=2000)
    message = await asyncio.to_thread(portal.store.add_message, tx.id, author="requester",
                                      name=tx.requester_name, text=text)
    for signer in tx.signers:
        if signer.status not in (SignerStatus.WAITING, SignerStatus.SIGNED):
            await portal.mail(signer.email, "message", signer.lang, name=tx.requester_name,
                              title=tx.title, text=text)
    return web.json_response(message_json(message), status=201)


# Signer API -------------------------------------------------------------------------

async def signer_get(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    return web.json_response(await signer_view(portal, signer_id, generation,
                                               request.query.get("lang")))


async def signer_consents(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    accepted = (await _body(request)).get("accepted")
    if not isinstance(accepted, list) or len(accepted) > len(legal.KINDS):
        raise PortalError(Code.BAD_REQUEST, "accepted: [{kind, version, sha256}]")
    records = _consent_records(accepted)
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
    return tx


async def signer_page_image(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
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
    portal, signer_id, generation = _invite(request)
    tx = await _unsigned_allowed(portal, signer_id, generation)
    doc = tx.document(request.match_info["doc"])
    return await _pdf(portal, doc.current.sha256, doc.name)


async def signer_zip(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    tx = await _unsigned_allowed(portal, signer_id, generation)

    def build() -> bytes:
        return zip_documents((doc.name, doc.position, portal.blobs.get(doc.current.sha256))
                             for doc in tx.documents)

    data = await asyncio.to_thread(build)
    return web.Response(body=data, content_type="application/zip", headers={
        "Content-Disposition": 'attachment; filename="documents.zip"'})


async def signer_accept(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    await asyncio.to_thread(portal.store.accept, signer_id, generation)
    return web.json_response(await signer_view(portal, signer_id, generation))


async def signer_restart(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    new_generation = await asyncio.to_thread(portal.store.restart, signer_id, generation)
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id,
                                         new_generation)
    await portal.invite(tx, signer)  # the new link also reaches the mailbox
    return web.json_response({"inviteUrl": portal.invite_url(tx, signer)})


async def signer_refuse(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    reason = _str(await _body(request), "reason", max_len=1000)
    tx = await asyncio.to_thread(portal.store.refuse, signer_id, generation, reason)
    signer = tx.signer(signer_id)
    await portal.mail(tx.requester_email, "refused", "en",
                      name=signer.name or signer.email, title=tx.title, reason=reason)
    log.info("signer %s refused transaction %s", signer_id, tx.id)
    return web.json_response(await signer_view(portal, signer_id, generation))


async def signer_messages(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    if not tx.messaging:
        raise PortalError(Code.MESSAGING_DISABLED)
    if request.method == "GET":
        messages = await asyncio.to_thread(portal.store.messages, tx.id)
        return web.json_response({"messages": [message_json(m) for m in messages]})
    text = _str(await _body(request), "text", max_len=2000)
    message = await asyncio.to_thread(
        portal.store.add_message, tx.id, author="signer", signer_id=signer_id,
        generation=generation, name=signer.name or signer.email, text=text)
    await portal.mail(tx.requester_email, "message", "en", name=message.name,
                      title=tx.title, text=text)
    return web.json_response(message_json(message), status=201)


async def signer_check_certificate(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    body = await _body(request)
    certificate = _b64(body.get("certificate"), "certificate", 16384)
    chain = _b64_list(body, "chain", max_items=8, max_bytes=16384) if "chain" in body else []
    return web.json_response(await portal.desk.check_for_signer(signer_id, generation,
                                                                certificate, chain))


async def signer_prepare(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    body = await _body(request)
    if body.get("phoneConfirmed") is not True:
        raise PortalError(Code.BAD_REQUEST, "phoneConfirmed: confirm the phone number first")
    certificate = _b64(body.get("certificate"), "certificate", 16384)
    chain = _b64_list(body, "chain", max_items=8, max_bytes=16384) if "chain" in body else []
    return web.json_response(await portal.desk.prepare(signer_id, generation, certificate,
                                                       chain))


async def signer_complete(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    body = await _body(request)
    session_id = _str(body, "sessionId", max_len=64)
    signatures = _b64_list(body, "signatures", max_items=20, max_bytes=1024)
    done = await portal.desk.complete(signer_id, generation, session_id, signatures)
    tx = done.transaction
    if done.next_signer is not None:
        await portal.invite(tx, done.next_signer)
    if done.stored and tx.status is TxStatus.COMPLETED:
        for signer in tx.signers:
            await portal.mail(signer.email, "completed", signer.lang,
                              name=signer.name or signer.email, title=tx.title,
                              url=portal.space_url(signer.email))
        await portal.mail(tx.requester_email, "completed", "en", name=tx.requester_name,
                          title=tx.title, url=f"{portal.config.base_url}/requester")
    return web.json_response(await signer_view(portal, signer_id, generation))


# First-time signer: enrolment ------------------------------------------------------

async def signer_enrolment(request: web.Request) -> web.Response:
    portal, signer_id, generation = _invite(request)
    step = request.match_info["step"]
    desk = portal.enrolment
    body = await _body(request)
    extra: dict[str, Any] = {}
    if step == "start":
        await desk.start(signer_id, generation)
    elif step == "personal-data":
        correct = body.get("correct")
        if not isinstance(correct, bool):
            raise PortalError(Code.BAD_REQUEST, "correct: true or false")
        name = phone = ""
        if not correct:
            name = _str(body, "name")
            phone = _str(body, "phone", max_len=16).replace(" ", "")
            if not _PHONE.match(phone):
                raise PortalError(Code.BAD_REQUEST, "phone: E.164, e.g. +33612345678")
        new_generation = await desk.personal_data(signer_id, generation, correct=correct,
                                                  name=name, phone=phone)
        if new_generation != generation:
            generation = new_generation
            tx, signer = await asyncio.to_thread(portal.store.check_signer, signer_id,
                                                 generation)
            extra["inviteUrl"] = portal.invite_url(tx, signer)
            await portal.invite(tx, signer)
            if not tx.messaging:
                await portal.mail(tx.requester_email, "message", "en",
                                  name=signer.name, title=tx.title,
                                  text=f"Personal data corrected: {signer.name}, "
                                       f"{signer.phone}")
    elif step == "consents":
        accepted = body.get("accepted")
        if not isinstance(accepted, list) or len(accepted) > len(legal.ENROLMENT_KINDS):
            raise PortalError(Code.BAD_REQUEST, "accepted: [{kind, version, sha256}]")
        await desk.consents(signer_id, generation, _consent_records(accepted))
    elif step == "identity":
        extra["identitySession"] = await desk.open_identity(
            signer_id, generation, _str(body, "document", max_len=20))
    elif step == "identity-done":
        _, signer = await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
        await desk.identity_done(signer_id, generation, signer)
    elif step == "identity-confirm":
        correct = body.get("correct")
        if not isinstance(correct, bool):
            raise PortalError(Code.BAD_REQUEST, "correct: true or false")
        await desk.confirm_identity(signer_id, generation, correct)
    elif step == "auth-data":
        phone = _str(body, "phone", max_len=16).replace(" ", "")
        if not _PHONE.match(phone):
            raise PortalError(Code.BAD_REQUEST, "phone: E.164, e.g. +33612345678")
        await desk.auth_data(signer_id, generation, given_names=_str(body, "givenNames"),
                             surname=_str(body, "surname"), phone=phone)
    elif step == "otp":
        otp_id, sent = await desk.send_token_code(signer_id, generation,
                                                  _str(body, "tokenID", max_len=128))
        return web.json_response({"otpSession": otp_id, "phoneMasked": sent.phone_masked,
                                  "expiresIn": sent.expires_in})
    elif step == "pin-set":
        await desk.pin_set(signer_id, generation)
    elif step == "evidence":
        if body.get("accept") is not True:
            raise PortalError(Code.BAD_REQUEST, "accept: read and accept the certificate "
                              "request first")
        evidence = await desk.evidence(signer_id, generation, b64_spki(body))
        return web.json_response({"evidence": evidence})
    elif step == "certificate":
        certificate = _b64(body.get("certificate"), "certificate", 16384)
        chain = _b64_list(body, "chain", max_items=8, max_bytes=16384) if "chain" in body \
            else []
        await desk.certificate(signer_id, generation, certificate,
                               await portal.desk.complete_chain(certificate, chain))
    else:
        raise PortalError(Code.NOT_FOUND, f"no enrolment step {step!r}")
    view = await signer_view(portal, signer_id, generation)
    return web.json_response({**view, **extra})


def _consent_records(accepted: list[Any]) -> list[tuple[str, str, str, str]]:
    records = []
    for item in accepted:
        if not isinstance(item, dict):
            raise PortalError(Code.BAD_REQUEST, "accepted: [{kind, version, sha256}]")
        kind, version = _str(item, "kind"), _str(item, "version")
        lang = legal.matches(kind, version, _str(item, "sha256"))
        if lang is None:
            raise PortalError(Code.CONSENT_OUTDATED, f"{kind} {version} is not the current "
                              "text: reload the page")
        records.append((kind, version, lang, _str(item, "sha256")))
    return records


# SMS OTP (the agent's provider calls these) -----------------------------------------

def _hash_strings(body: dict[str, Any]) -> list[str]:
    hashes = _b64_list(body, "hashes", max_items=100, max_bytes=64)
    if not hashes or any(len(h) not in (32, 48, 64) for h in hashes):
        raise PortalError(Code.BAD_REQUEST, "hashes: SHA-256/384/512 digests")
    return [base64.b64encode(h).decode() for h in hashes]


async def sms_otp_send(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    require_agent(request.headers, portal.config.agent_token_sha256)
    body = await _body(request)
    otp_id = _str(body, "session", max_len=64)
    hashes = _hash_strings(body)
    sent = await portal.desk.send_code(otp_id, hashes)
    return web.json_response({"phoneMasked": sent.phone_masked, "expiresIn": sent.expires_in})


async def sms_otp_verify(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    require_agent(request.headers, portal.config.agent_token_sha256)
    body = await _body(request)
    otp_id = _str(body, "session", max_len=64)
    code = _str(body, "code", max_len=12)
    hashes = _hash_strings(body)
    # A token-management code of an enrolment, or a signing session's code.
    desk = portal.enrolment if await portal.enrolment.owns_code(otp_id) else portal.desk
    await desk.verify_code(otp_id, code, hashes)
    return web.json_response({"verified": True})


# Personal Space ---------------------------------------------------------------------

def _space(request: web.Request) -> tuple[Portal, str]:
    portal = request.app[PORTAL]
    try:
        link = portal.links.open(Purpose.SPACE, request.match_info["space"],
                                 now=portal.store.clock().timestamp())
    except LinkInvalid:
        raise PortalError(Code.LINK_INVALID) from None
    except LinkExpired:
        raise PortalError(Code.LINK_EXPIRED) from None
    return portal, link.subject


async def space_otp(request: web.Request) -> web.Response:
    portal, email = _space(request)
    records = await asyncio.to_thread(portal.store.signer_records, email)
    phones = [s.phone for _, s in records if s.phone]
    if not phones:
        raise PortalError(Code.NO_PHONE, "no phone number on file for this address")
    await asyncio.to_thread(portal.otp.space_wait, email, phones[-1])
    otp_id = await asyncio.to_thread(portal.store.new_otp_session, purpose="space",
                                     subject=email, phone=phones[-1], hashes=[])
    sent = await asyncio.to_thread(
        portal.otp.send, otp_id, [], "qsign: {code} opens your Personal Space. "
        "Valid 5 minutes. Never share it.")
    return web.json_response({"otpSession": otp_id, "phoneMasked": sent.phone_masked,
                              "expiresIn": sent.expires_in})


async def space_session(request: web.Request) -> web.Response:
    portal, email = _space(request)
    body = await _body(request)
    otp_id = _str(body, "otpSession", max_len=64)
    session = await asyncio.to_thread(portal.otp.verify, otp_id, _str(body, "code",
                                                                       max_len=12), [])
    if session.purpose != "space" or session.subject != email:
        raise PortalError(Code.SESSION_UNKNOWN)
    token = secrets.token_urlsafe(32)
    await asyncio.to_thread(portal.store.add_space_session,
                            hashlib.sha256(token.encode()).hexdigest(), email,
                            portal.store.clock() + SPACE_SESSION)
    return web.json_response({"session": token,
                              "expiresIn": int(SPACE_SESSION.total_seconds())})


async def _space_email(request: web.Request) -> tuple[Portal, str]:
    portal = request.app[PORTAL]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise PortalError(Code.UNAUTHORIZED)
    email = await asyncio.to_thread(portal.store.space_session,
                                    hashlib.sha256(token.strip().encode()).hexdigest())
    if email is None:
        raise PortalError(Code.UNAUTHORIZED, "the session expired: ask for a new code")
    return portal, email


async def space_get(request: web.Request) -> web.Response:
    portal, email = await _space_email(request)
    records = await asyncio.to_thread(portal.store.signer_records, email)
    documents = []
    for tx, signer in records:
        if signer.status is not SignerStatus.SIGNED:
            continue
        for doc in tx.documents:
            documents.append({"transactionId": tx.id, "title": tx.title, "docId": doc.id,
                              "name": doc.name, "signedAt": _iso(signer.signed_at),
                              "complete": tx.status is TxStatus.COMPLETED,
                              "url": f"/api/me/documents/{tx.id}/{doc.id}"})
    ders = await asyncio.to_thread(portal.store.certificates_of, email)
    certificates = [await portal.desk.describe(der, list(chain)) for der, chain in ders]
    name = next((s.name for _, s in reversed(records) if s.name), "")
    return web.json_response({"name": name, "email": email, "documents": documents,
                              "certificates": certificates})


async def space_document(request: web.Request) -> web.Response:
    portal, email = await _space_email(request)
    tx = await asyncio.to_thread(portal.store.transaction, request.match_info["tx"])
    if not any(s.email.lower() == email and s.status is SignerStatus.SIGNED
               for s in tx.signers):
        raise PortalError(Code.NOT_FOUND, "no such document")
    doc = tx.document(request.match_info["doc"])
    return await _pdf(portal, doc.current.sha256, doc.name)


# Testers ----------------------------------------------------------------------------

async def outbox(request: web.Request) -> web.Response:
    portal = _requester(request)
    to = request.query.get("to")
    sms = await asyncio.to_thread(portal.store.sms, to)
    mails = await asyncio.to_thread(portal.store.mails, to=to)
    return web.json_response({
        "sms": [{"to": t, "text": text, "at": _iso(at)} for t, text, at in sms],
        "mail": [{"to": m.to, "subject": m.subject, "body": m.body, "at": _iso(m.at),
                  "sentAt": _iso(m.sent_at), "lastError": m.last_error} for m in mails]})


async def legal_text(request: web.Request) -> web.Response:
    found = legal.text(request.match_info["kind"], request.match_info["version"],
                       request.query.get("lang", "en"))
    if found is None:
        raise PortalError(Code.NOT_FOUND, "no such text")
    return web.Response(text=found.html, content_type="text/html", charset="utf-8")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    spec = json.loads((resources.files("portal") / "openapi.json").read_text())
    return web.json_response(spec)


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resource = WEB / name
        try:
            html = resource.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PortalError(Code.NOT_FOUND, f"page {name} is not installed") from None
        return web.Response(text=html, content_type="text/html", charset="utf-8")
    return handler


async def static(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    if ".." in path.split("/") or path.startswith("/"):
        raise PortalError(Code.NOT_FOUND)
    resource = WEB.joinpath(*path.split("/"))
    try:
        data = resource.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise PortalError(Code.NOT_FOUND, "no such file") from None
    types = {".js": "text/javascript", ".css": "text/css", ".json": "application/json",
             ".svg": "image/svg+xml", ".png": "image/png", ".html": "text/html"}
    suffix = Path(path).suffix
    return web.Response(body=data, content_type=types.get(suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})


# Wiring -----------------------------------------------------------------------------

@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        response = await handler(request)
    except PortalError as exc:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        response = web.json_response(exc.body(), status=exc.status)
    except (BlobMissing, BlobCorrupt) as exc:
        log.error("document store: %s", exc)
        response = web.json_response(PortalError(Code.INTERNAL).body(), status=500)
    except web.HTTPRequestEntityTooLarge:
        response = web.json_response(PortalError(Code.PAYLOAD_TOO_LARGE).body(), status=413)
    except web.HTTPException as exc:
        code = {404: Code.NOT_FOUND, 405: Code.BAD_REQUEST}.get(exc.status, Code.BAD_REQUEST)
        response = web.json_response(PortalError(code, exc.reason).body(), status=exc.status)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = web.json_response(PortalError(Code.INTERNAL).body(), status=500)
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    else:
        port = request.app[PORTAL].config.agent_port
        agent = f"http://127.0.0.1:{port} ws://127.0.0.1:{port}"
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src 'self' http://127.0.0.1:{port}; "
            f"connect-src 'self' {agent}; img-src 'self' data:; style-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    return response


def create_app(config: PortalConfig, *, store: Store | None = None,
               gateway: SmsGateway | None = None,
               identity: IdentityProvider | None = None) -> web.Application:
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = store or Store.open(config.database_url, config.state_dir)
    blobs = BlobStore(config.state_dir / "documents")
    otp = SmsOtp.from_state(store, gateway or OutboxGateway(store), config.state_dir)
    mailer = Mailer(store, config)
    desk = SigningDesk(config, store, blobs, otp)
    identity = identity or ReferenceIdentityService(
        EvidenceSigner.open(config.state_dir / "identity"),
        config.identity_policy
        or IdentityPolicy(accept_specimens=config.identity_accept_specimens), clock=store.clock)
    portal = Portal(config=config, store=store, blobs=blobs,
                    links=LinkSigner.from_state(config.state_dir), otp=otp, mailer=mailer,
                    desk=desk, enrolment=EnrolmentDesk(store, identity, desk.check, otp),
                    requester_token=requester_token(config.state_dir))
    app = web.Application(middlewares=[_errors, same_origin_only(config.base_url)],
                          client_max_size=config.max_request_bytes)
    app[PORTAL] = portal
    r = app.router
    r.add_post("/api/v1/transactions", create_transaction)
    r.add_get("/api/v1/transactions", list_transactions)
    r.add_get("/api/v1/transactions/{id}", get_transaction)
    r.add_get("/api/v1/transactions/{id}/documents/{doc}", requester_document)
    r.add_route("*", "/api/v1/transactions/{id}/messages", requester_messages)
    r.add_get("/api/v1/outbox", outbox)
    r.add_get("/api/v1/openapi.json", openapi)
    r.add_post("/api/v1/sms-otp/send", sms_otp_send)
    r.add_post("/api/v1/sms-otp/verify", sms_otp_verify)
    r.add_get("/api/s/{invite}", signer_get)
    r.add_post("/api/s/{invite}/consents", signer_consents)
    r.add_get("/api/s/{invite}/documents/{doc}/pages/{n:[0-9]+}.png", signer_page_image)
    r.add_get("/api/s/{invite}/documents/{doc}/download", signer_download)
    r.add_get("/api/s/{invite}/documents.zip", signer_zip)
    r.add_post("/api/s/{invite}/accept", signer_accept)
    r.add_post("/api/s/{invite}/restart", signer_restart)
    r.add_post("/api/s/{invite}/refuse", signer_refuse)
    r.add_route("*", "/api/s/{invite}/messages", signer_messages)
    r.add_post("/api/s/{invite}/certificates/check", signer_check_certificate)
    r.add_post("/api/s/{invite}/sign/prepare", signer_prepare)
    r.add_post("/api/s/{invite}/sign/complete", signer_complete)
    r.add_post("/api/s/{invite}/enrolment/{step}", signer_enrolment)
    r.add_post("/api/me/{space}/otp", space_otp)
    r.add_post("/api/me/{space}/session", space_session)
    r.add_get("/api/me", space_get)
    r.add_get("/api/me/documents/{tx}/{doc}", space_document)
    r.add_get("/legal/{kind}/{version}", legal_text)
    r.add_get("/health", health)
    r.add_get("/", _page("index.html"))
    r.add_get("/requester", _page("requester.html"))
    r.add_get("/outbox", _page("outbox.html"))
    r.add_get("/s/{invite}", _page("signer.html"))
    r.add_get("/me/{space}", _page("me.html"))
    r.add_get("/id/{session}", _page("identity.html"))  # "continue on my smartphone"
    r.add_get("/static/{path:.+}", static)

    async def background(app: web.Application) -> Any:
        tasks = [asyncio.create_task(mailer.run(), name="mailer"),
                 asyncio.create_task(_sweeper(portal), name="sweeper")]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(background)
    app.add_subapp("/api/identity/", create_identity_app(
        identity, continue_url=f"{config.base_url}/id/{{session}}", evidence_routes=False))
    return app


async def sweep_expired(portal: Portal) -> list[Transaction]:
    """Close the open transactions whose expiry passed and tell their requesters."""
    expired = await asyncio.to_thread(portal.store.expire_due)
    for tx in expired:
        log.info("transaction %s expired", tx.id)
        signed = [s.name or s.email for s in tx.signers if s.status is SignerStatus.SIGNED]
        await portal.mail(tx.requester_email, "expired", "en", title=tx.title,
                          signed=", ".join(signed) or "nobody")
    return expired


async def _sweeper(portal: Portal, every: float = 60) -> None:
    while True:
        try:
            await sweep_expired(portal)
        except Exception:
            log.exception("expiry sweep failed")
        await asyncio.sleep(every)
