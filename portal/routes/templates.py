"""A workspace's templates (portal/API.md "Templates"): a saved transaction (documents,
signer roles to fill, signing order, parameters, the invitation's message), shared by the
workspace's members: viewers read, requesters and above save, edit and start
transactions from them, one at a time or in bulk (portal/routes/bulk.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ground.sql import Cursor
from portal.accounts import Principal, Role
from portal.audit import arecord
from portal.body_schema import openapi_request
from portal.errors import Code, PortalError
from portal.routes.access import accounts_of, member
from portal.routes.parse import e164, iso, read_body
from portal.routes.sending import Outline, parameters_of, refuse, send, take_documents
from portal.routes.state import Portal
from portal.routes.views import requester_transaction
from portal.store import NewDocument, NewSigner, Transaction
from portal.store.templates import Template
from portal.store.turns import SigningOrder

_PATH = "/api/v1/workspaces/{ws}/templates"
NEW_TEMPLATE = openapi_request(_PATH, "post")
TEMPLATE_UPDATE = openapi_request(_PATH + "/{tpl}", "patch")
FROM_TEMPLATE = openapi_request(_PATH + "/{tpl}/transactions", "post")
# What a template keeps of the transaction parameters, and their defaults.
_KEPT = ("signingOrder", "reminderDays", "secondFactor", "languages", "downloadUnsigned",
         "message", "level", "expiresInDays", "qualified", "messaging")


def template_json(template: Template) -> dict[str, Any]:
    return {"id": template.id, "name": template.name, "revision": template.revision,
            **template.body, "createdBy": template.created_by,
            "createdAt": iso(template.created_at), "updatedAt": iso(template.updated_at)}


def checked_body(title: str, documents: list[dict[str, Any]], roles: list[dict[str, Any]],
                 parameters: dict[str, Any]) -> dict[str, Any]:
    """A template's body once its roles fit its parameters (unique names, a group each
    exactly when the order is by groups, appearances); each refusal names its field."""
    names = [r["role"].strip() for r in roles]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise refuse(f"roles[{i}].role", "each role has its own name")
    try:
        parameters_of(parameters, roles)
    except PortalError as exc:  # the roles are the signers of a template
        field = str(exc.extra.get("field", "")).replace("signers[", "roles[", 1)
        raise refuse(field, str(exc).split(": ", 1)[-1]) from None
    return {"title": title, "documents": documents,
            "roles": [{**r, "role": name} for r, name in zip(roles, names, strict=True)],
            "parameters": {k: v for k, v in parameters.items() if k in _KEPT}}


async def _from_transaction(portal: Portal, workspace: str, tx_id: str) -> dict[str, Any]:
    if await asyncio.to_thread(accounts_of(portal).workspace_of_transaction,
                               tx_id) != workspace:
        raise PortalError(Code.NOT_FOUND, "no such transaction", field="fromTransaction")
    tx = await asyncio.to_thread(portal.store.transaction, tx_id)
    kept = await asyncio.to_thread(portal.store.parameters, tx_id)
    groups = kept.signing_order is SigningOrder.GROUPS
    roles = [{"role": s.name or f"Signer {s.position + 1}",
              **({"group": s.turn} if groups else {}),
              **({"appearance": kept.appearances[s.position].to_json()}
                 if s.position in kept.appearances else {})} for s in tx.signers]
    documents = [{"name": d.name, "sha256": d.original.sha256, "size": d.original.size,
                  "pages": d.pages} for d in tx.documents]
    parameters = {**{k: v for k, v in kept.to_json().items() if v is not None},
                  "level": tx.level, "qualified": tx.qualified, "messaging": tx.messaging,
                  "expiresInDays": max(1, (tx.expires_at - tx.created_at).days)}
    return checked_body(tx.title, documents, roles, parameters)


async def list_templates(request: web.Request) -> web.Response:
    portal, _, _ = await member(request, request.match_info["ws"], Role.VIEWER)
    found = await asyncio.to_thread(portal.store.templates, request.match_info["ws"])
    return web.json_response({"templates": [template_json(t) for t in found]})


async def create_template(request: web.Request) -> web.Response:
    workspace = request.match_info["ws"]
    portal, who, _ = await member(request, workspace, Role.REQUESTER)
    fields = await read_body(request, NEW_TEMPLATE)
    if "fromTransaction" in fields:
        body = await _from_transaction(portal, workspace, fields["fromTransaction"])
    else:
        for needed in ("title", "documents", "roles"):
            if needed not in fields:
                raise refuse(needed, "required without fromTransaction")
        docs = await take_documents(portal, fields)
        body = checked_body(fields["title"].strip(), [_document(d) for d in docs],
                            fields["roles"], fields.get("parameters", {}))
    template = await asyncio.to_thread(portal.store.add_template, workspace,
                                       fields["name"].strip(), body, who.user_id)
    await _audit(portal, who, "template.create", template)
    return web.json_response(template_json(template), status=201)


async def template_at(request: web.Request, need: Role
                      ) -> tuple[Portal, Principal, Template]:
    """The portal, the principal and the template `{tpl}` of the workspace `{ws}`, for a
    member with at least `need`."""
    portal, who, _ = await member(request, request.match_info["ws"], need)
    template = await asyncio.to_thread(portal.store.template, request.match_info["ws"],
                                       request.match_info["tpl"])
    return portal, who, template


async def get_template(request: web.Request) -> web.Response:
    _, _, template = await template_at(request, Role.VIEWER)
    return web.json_response(template_json(template))


async def update_template(request: web.Request) -> web.Response:
    portal, who, current = await template_at(request, Role.REQUESTER)
    fields = await read_body(request, TEMPLATE_UPDATE)
    body = current.body
    merged = checked_body(fields.get("title", body["title"]).strip(), body["documents"],
                          fields.get("roles", body["roles"]),
                          fields.get("parameters", body["parameters"]))
    template = await asyncio.to_thread(
        portal.store.update_template, current.workspace_id, current.id,
        fields.get("name", current.name).strip(), merged, fields.get("revision"))
    await _audit(portal, who, "template.update", template)
    return web.json_response(template_json(template))


async def delete_template(request: web.Request) -> web.Response:
    portal, who, template = await template_at(request, Role.REQUESTER)
    await asyncio.to_thread(portal.store.delete_template, template.workspace_id, template.id)
    await _audit(portal, who, "template.delete", template)
    return web.Response(status=204)


async def start_from_template(request: web.Request) -> web.Response:
    portal, who, template = await template_at(request, Role.REQUESTER)
    fields = await read_body(request, FROM_TEMPLATE)
    requester = requester_of(who, fields.get("requester"))
    tx = await start(portal, template.id, template.body, template.workspace_id, who.user_id,
                     requester, fields["signers"], fields.get("title"))
    return web.json_response(await requester_transaction(portal, tx), status=201)


async def start(portal: Portal, template_id: str, body: dict[str, Any], workspace: str,
                created_by: str, requester: dict[str, str], people: list[dict[str, Any]],
                title: str | None = None,
                also: Callable[[Cursor, Transaction], None] | None = None) -> Transaction:
    """A transaction from a template's `body`, each role filled by one of `people`
    ({"role", "email", "name"?, "phone"?, "lang"?}); refusals name `signers[i]`."""
    roles = body["roles"]
    by_role: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, person in enumerate(people):
        name = person["role"].strip()
        if name not in {r["role"] for r in roles}:
            raise refuse(f"signers[{i}].role", "not a role of this template")
        if name in by_role:
            raise refuse(f"signers[{i}].role", "filled twice")
        by_role[name] = (i, person)
    missing = [r["role"] for r in roles if r["role"] not in by_role]
    if missing:
        raise refuse("signers", f"the role {missing[0]!r} is not filled")
    signers = [NewSigner(by_role[r["role"]][1].get("name", "").strip(),
                         by_role[r["role"]][1]["email"].strip(),
                         e164(by_role[r["role"]][1].get("phone", "")),
                         by_role[r["role"]][1].get("lang", portal.config.default_lang))
               for r in roles]
    kept = body["parameters"]
    parameters, turns = parameters_of(kept, roles, template_id)
    outline = Outline(
        workspace_id=workspace, created_by=created_by,
        title=(title or body["title"]).strip(), requester_name=requester["name"].strip(),
        requester_email=requester["email"].strip(),
        documents=tuple(NewDocument(d["name"], d["sha256"], int(d["size"]), int(d["pages"]))
                        for d in body["documents"]),
        level=kept.get("level", "B-LT"), days=int(kept.get("expiresInDays", 14)),
        qualified=kept.get("qualified", True), messaging=kept.get("messaging", True))
    return await send(portal, outline, signers, parameters, turns, also)


def requester_of(who: Principal, given: dict[str, str] | None) -> dict[str, str]:
    """Who asks: the body's `requester`, else the signed-in user."""
    if given is not None:
        return given
    if not who.email:
        raise refuse("requester", "required for the service administrator's token")
    return {"name": who.name or who.email, "email": who.email}


def _document(doc: NewDocument) -> dict[str, Any]:
    return {"name": doc.name, "sha256": doc.sha256, "size": doc.size, "pages": doc.pages}


async def _audit(portal: Portal, who: Principal, action: str, template: Template) -> None:
    await arecord(portal.store.db, actor=who.actor, action=action,
                  subject=f"template:{template.id}",
                  details={"workspace": template.workspace_id, "name": template.name,
                           "revision": template.revision})
