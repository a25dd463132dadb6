"""Workspaces (portal/API.md "Authentication"): create one (its creator owns it), list
one's own, read the members, invite by e-mail with a role, change a role, remove a
member. Admins manage members but not owners; owners manage everyone; a workspace keeps
at least one owner. The workspace's transactions are portal/routes/requester.py."""

from __future__ import annotations

import asyncio
import secrets

from aiohttp import web

from portal.accounts import Role, Workspace
from portal.audit import arecord
from portal.body_schema import openapi_request
from portal.errors import Code, PortalError
from portal.routes.access import accounts_of, digest, member, principal
from portal.routes.parse import iso, read_body
from portal.routes.signin import INVITATION_LINK
from portal.routes.state import PORTAL
from portal.translations import N_, translate

NEW_WORKSPACE = openapi_request("/api/v1/workspaces", "post")
NEW_INVITATION = openapi_request("/api/v1/workspaces/{ws}/invitations", "post")
ROLE_CHANGE = openapi_request("/api/v1/workspaces/{ws}/members/{userId}", "patch")
# The role as the invitation mail words it ("... as {role}."), in the mail's language.
ROLE_WORDS = {Role.OWNER: N_("owner"), Role.ADMIN: N_("administrator"),
              Role.REQUESTER: N_("requester"), Role.VIEWER: N_("viewer")}


def _workspace_json(workspace: Workspace, role: Role) -> dict[str, object]:
    return {"id": workspace.id, "name": workspace.name, "role": role.label,
            "createdAt": iso(workspace.created_at),
            "suspended": workspace.suspended_at is not None}


async def workspaces_list(request: web.Request) -> web.Response:
    """Every workspace of the principal (a token: its own; the service administrator:
    all, as owner)."""
    who = await principal(request)
    store = accounts_of(request.app[PORTAL])
    if who.is_service_admin and who.token_workspace is None:
        found = [(w, Role.OWNER) for w in await asyncio.to_thread(store.all_workspaces)]
    else:
        found = await asyncio.to_thread(store.workspaces_of, who.user_id)
        found = [(w, r) for w, r in found
                 if who.token_workspace in (None, w.id)]
    return web.json_response({"workspaces": [_workspace_json(w, r) for w, r in found]})


async def workspace_create(request: web.Request) -> web.Response:
    who = await principal(request)
    if who.token_workspace is not None:
        raise PortalError(Code.FORBIDDEN, "an API token works in its own workspace only")
    name = (await read_body(request, NEW_WORKSPACE))["name"].strip()
    portal = request.app[PORTAL]
    owner = None if who.via == "bootstrap" else who.user_id
    workspace = await asyncio.to_thread(accounts_of(portal).create_workspace, name, owner)
    await arecord(portal.store.db, actor=who.actor, action="workspace.create",
                  subject=f"workspace:{workspace.id}", details={"name": name})
    return web.json_response(_workspace_json(workspace, Role.OWNER), status=201)


async def workspace_get(request: web.Request) -> web.Response:
    ws = request.match_info["ws"]
    portal, _, role = await member(request, ws, Role.VIEWER)
    store = accounts_of(portal)
    workspace = await asyncio.to_thread(store.workspace, ws)
    members = await asyncio.to_thread(store.members, ws)
    return web.json_response({**_workspace_json(workspace, role), "members": [
        {"id": m.user_id, "email": m.email, "name": m.name, "role": m.role.label,
         "addedAt": iso(m.added_at)} for m in members]})


def _may_manage(mine: Role, theirs: Role) -> None:
    """An admin manages requesters and viewers; only an owner makes or unmakes owners
    and admins."""
    if theirs >= Role.ADMIN and mine < Role.OWNER:
        raise PortalError(Code.FORBIDDEN, "only an owner gives or changes this role")


async def invitation_create(request: web.Request) -> web.Response:
    ws = request.match_info["ws"]
    portal, who, mine = await member(request, ws, Role.ADMIN)
    body = await read_body(request, NEW_INVITATION)
    role = Role.parse(body["role"])
    _may_manage(mine, role)
    store = accounts_of(portal)
    workspace = await asyncio.to_thread(store.workspace, ws)
    email = body["email"].strip().lower()
    secret = secrets.token_urlsafe(32)
    expires = store.clock() + INVITATION_LINK
    await asyncio.to_thread(store.add_invitation, digest(secret), ws, email, role,
                            who.actor, expires)
    lang = portal.config.default_lang
    await portal.mail(email, "workspace-invite", lang,
                      inviter=translate(lang, N_("The service administrator"))
                      if who.via == "bootstrap" else who.name or who.email,
                      workspace=workspace.name, role=translate(lang, ROLE_WORDS[role]),
                      expires=expires.strftime("%Y-%m-%d %H:%M UTC"),
                      url=f"{portal.config.base_url}/join/{secret}")
    await arecord(portal.store.db, actor=who.actor, action="workspace.invite",
                  subject=f"workspace:{ws}", details={"email": email, "role": role.label})
    return web.json_response({"email": email, "role": role.label,
                              "expiresAt": iso(expires)}, status=201)


async def member_change(request: web.Request) -> web.Response:
    """`PATCH` a member's role, `DELETE` them from the workspace (their tokens for it are
    revoked)."""
    ws, user_id = request.match_info["ws"], request.match_info["user"]
    portal, who, mine = await member(request, ws, Role.ADMIN)
    store = accounts_of(portal)
    theirs = await asyncio.to_thread(store.role_of, ws, user_id)
    if theirs is None:
        raise PortalError(Code.NOT_FOUND, "no such member")
    _may_manage(mine, theirs)
    role = None
    if request.method == "PATCH":
        role = Role.parse((await read_body(request, ROLE_CHANGE))["role"])
        _may_manage(mine, role)
    await asyncio.to_thread(store.set_role, ws, user_id, role)
    await arecord(portal.store.db, actor=who.actor, action="workspace.role",
                  subject=f"workspace:{ws}",
                  details={"user": user_id, "from": theirs.label,
                           "to": role.label if role else None})
    return web.json_response({"id": user_id, "role": role.label if role else None})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/v1/workspaces", workspaces_list)
    r.add_post("/api/v1/workspaces", workspace_create)
    r.add_get("/api/v1/workspaces/{ws}", workspace_get)
    r.add_post("/api/v1/workspaces/{ws}/invitations", invitation_create)
    r.add_patch("/api/v1/workspaces/{ws}/members/{user}", member_change)
    r.add_delete("/api/v1/workspaces/{ws}/members/{user}", member_change)
