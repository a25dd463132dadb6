"""What the portal answers with: the JSON views of portal/API.md (`Transaction`,
`Message`, `SignerView`) and PDF downloads."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from portal import legal
from portal.enrolment import enrolment_view
from portal.intake import kinds_of
from portal.otp import mask_phone
from portal.routes.parse import iso
from portal.routes.state import Portal
from portal.store import (
    Enrolment,
    EnrolmentStep,
    Message,
    Signer,
    SignerStatus,
    Transaction,
    TxStatus,
)
from portal.store.turns import SigningOrder


def transaction_json(portal: Portal, tx: Transaction, order: SigningOrder, *,
                     for_requester: bool) -> dict[str, Any]:
    """`Transaction` (portal/API.md): `signingOrder` as kept in its parameters, each
    signer's `group` (their turn) when by groups; `sequential` kept for older clients."""
    return {
        "id": tx.id, "title": tx.title, "status": tx.status.value,
        "createdAt": iso(tx.created_at), "expiresAt": iso(tx.expires_at),
        "sequential": tx.sequential, "signingOrder": order.value,
        "qualified": tx.qualified, "messaging": tx.messaging, "level": tx.level,
        "requester": {"name": tx.requester_name, "email": tx.requester_email},
        "documents": [{"id": d.id, "name": d.name, "sha256": d.current.sha256,
                       "size": d.current.size, "pages": d.pages,
                       "signatures": len(d.versions) - 1} for d in tx.documents],
        "signers": [{
            "id": s.id, "name": s.name, "email": s.email, "phone": s.phone, "lang": s.lang,
            "order": s.position + 1, "status": s.status.value,
            "group": s.turn if order is SigningOrder.GROUPS else None,
            "refusalReason": s.refusal_reason, "signedAt": iso(s.signed_at),
            "inviteUrl": (portal.invite_url(tx, s) if for_requester
                          and s.status not in (SignerStatus.WAITING, SignerStatus.SIGNED)
                          and tx.status is TxStatus.OPEN else None),
        } for s in tx.signers],
    }


async def requester_transactions(portal: Portal, txs: Sequence[Transaction]
                                 ) -> list[dict[str, Any]]:
    """The requester API's `Transaction` of each of `txs`, with its signing order."""
    def orders() -> list[SigningOrder]:
        return [portal.store.parameters(tx.id).signing_order for tx in txs]

    found = await asyncio.to_thread(orders)
    return [transaction_json(portal, tx, order, for_requester=True)
            for tx, order in zip(txs, found, strict=True)]


async def requester_transaction(portal: Portal, tx: Transaction) -> dict[str, Any]:
    [view] = await requester_transactions(portal, [tx])
    return view


def message_json(message: Message) -> dict[str, Any]:
    return {"id": message.id, "author": message.author, "signerId": message.signer_id,
            "name": message.name, "text": message.text, "at": iso(message.at)}


def step(tx: Transaction, signer: Signer, enrolment: Enrolment | None = None) -> str:
    """The signer page's step (portal/API.md `SignerView.step`)."""
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
    kept = await asyncio.to_thread(portal.store.parameters, tx.id)
    return {
        "transaction": {"id": tx.id, "title": tx.title,
                        "requester": {"name": tx.requester_name},
                        "messaging": tx.messaging, "level": tx.level,
                        "qualified": tx.qualified, "status": tx.status.value,
                        "expiresAt": iso(tx.expires_at),
                        "signers": len(tx.signers),
                        "signed": sum(s.status is SignerStatus.SIGNED for s in tx.signers),
                        # The requester's parameters the signer's page follows.
                        "languages": list(kept.languages),
                        "secondFactor": kept.second_factor,
                        "downloadUnsigned": kept.download_unsigned},
        "signer": {"id": signer.id, "name": signer.name, "email": signer.email,
                   "phone": signer.phone, "phoneMasked": mask_phone(signer.phone),
                   "lang": signer.lang, "status": signer.status.value,
                   "refusalReason": signer.refusal_reason,
                   "signedAt": iso(signer.signed_at)},
        "step": step(tx, signer, enrolment),
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


async def pdf_response(portal: Portal, sha: str, name: str, *, inline: bool = False
                       ) -> web.Response:
    data = await asyncio.to_thread(portal.blobs.get, sha)
    disposition = "inline" if inline else "attachment"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return web.Response(body=data, content_type="application/pdf", headers={
        "Content-Disposition": f'{disposition}; filename="{safe}"'})
