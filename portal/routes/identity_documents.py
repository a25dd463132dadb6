"""Accepted identity documents (portal/accepted_documents.py) over HTTP: what a signer
may present, shown before capture (`GET /api/s/{invite}/identity-documents`), and a
workspace's list, read by its members and set by its admins
(`GET|PUT /api/v1/workspaces/{id}/identity-documents`, portal/API.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from portal import accepted_documents as documents
from portal import audit
from portal.accounts import Role
from portal.body_schema import openapi_request
from portal.identity import countries
from portal.routes.access import invite, member
from portal.routes.parse import read_body
from portal.routes.state import Portal

PATH = "/api/v1/workspaces/{ws}/identity-documents"
CHOICE = openapi_request(PATH, "put")


def _listed(accepted: documents.Accepted) -> list[dict[str, Any]]:
    """[{state, alpha2, name, documents}], the page names states in its language."""
    out = []
    for code, kinds in documents.as_json(accepted).items():
        state = countries.lookup(code)
        out.append({"state": code, "alpha2": state.alpha2 if state else None,
                    "name": state.name if state else code, "documents": kinds})
    return out


def listing(portal: Portal, own: documents.Accepted | None) -> dict[str, Any]:
    """The JSON view: the list that applies, and whether it is the workspace's own."""
    supported = documents.supported(portal.config.identity_policy)
    return {"accepted": _listed(own if own is not None else supported),
            "restricted": own is not None, "supported": _listed(supported)}


async def signer_identity_documents(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    await asyncio.to_thread(portal.store.check_signer, signer_id, generation)
    own = await asyncio.to_thread(documents.for_signer, portal.store.db, signer_id)
    view = listing(portal, own)
    del view["supported"]  # the signer needs what applies, not what could
    return web.json_response(view)


async def workspace_identity_documents(request: web.Request) -> web.Response:
    workspace_id = request.match_info["ws"]
    if request.method == "GET":
        portal, _, _ = await member(request, workspace_id, Role.VIEWER)
        own = await asyncio.to_thread(documents.of_workspace, portal.store.db, workspace_id)
        return web.json_response(listing(portal, own))
    portal, who, _ = await member(request, workspace_id, Role.ADMIN)
    raw = (await read_body(request, CHOICE))["accepted"]
    chosen = None if raw is None else documents.parse(
        raw, documents.supported(portal.config.identity_policy))
    await asyncio.to_thread(documents.replace, portal.store.db, workspace_id, chosen)
    await audit.arecord(portal.store.db, actor=who.actor,
                        action="workspace.identity-documents",
                        subject=f"workspace:{workspace_id}",
                        details={"accepted": None if chosen is None
                                 else documents.as_json(chosen)})
    return web.json_response(listing(portal, chosen))
