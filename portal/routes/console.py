"""The master console over HTTP (portal/API.md "Master console", `/api/v1/console/...`):
workspaces and their members, every account, usage per month, suspending a workspace or
a user, and the audit log with its verification. The service administrator only
(`service_admin`: the bootstrap token or an account flagged so); the page is /console."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web

from portal import audit, console
from portal.body_schema import openapi_request
from portal.errors import Code, PortalError
from portal.routes.access import accounts_of, service_admin
from portal.routes.parse import read_body

BASE = "/api/v1/console"
SUSPENSION = openapi_request(f"{BASE}/workspaces/{{id}}/suspension", "post")
USER_SUSPENSION = openapi_request(f"{BASE}/users/{{id}}/suspension", "post")
USAGE_MONTHS = 12  # what the page shows unless ?months= asks for more (up to 60)
AUDIT_PAGE = 50


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(f"{BASE}/workspaces", workspaces)
    r.add_post(f"{BASE}/workspaces/{{id}}/suspension", suspend_workspace)
    r.add_get(f"{BASE}/users", users)
    r.add_post(f"{BASE}/users/{{id}}/suspension", suspend_user)
    r.add_get(f"{BASE}/usage", usage)
    r.add_get(f"{BASE}/audit", audit_log)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _number(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise PortalError(Code.BAD_REQUEST, f"{name}: a whole number from {low} to {high}",
                          field=name)
    return int(raw)


async def workspaces(request: web.Request) -> web.Response:
    portal, _ = await service_admin(request)
    store = accounts_of(portal)

    def read() -> list[dict[str, Any]]:
        return [{"id": w.id, "name": w.name, "createdAt": _iso(w.created_at),
                 "suspendedAt": _iso(w.suspended_at),
                 "members": [{"userId": m.user_id, "email": m.email, "name": m.name,
                              "role": m.role.label} for m in store.members(w.id)]}
                for w in store.all_workspaces()]

    return web.json_response({"workspaces": await asyncio.to_thread(read)})


async def users(request: web.Request) -> web.Response:
    portal, _ = await service_admin(request)
    return web.json_response({"users": await asyncio.to_thread(console.users,
                                                               portal.store.db)})


async def suspend_workspace(request: web.Request) -> web.Response:
    portal, who = await service_admin(request)
    workspace_id = request.match_info["id"]
    suspended = (await read_body(request, SUSPENSION))["suspended"]
    at = portal.store.clock() if suspended else None
    if await asyncio.to_thread(console.set_workspace_suspended, portal.store.db,
                               workspace_id, at):
        await audit.arecord(portal.store.db, actor=who.actor,
                            action="workspace.suspend" if suspended else "workspace.resume",
                            subject=f"workspace:{workspace_id}", details={})
    workspace = await asyncio.to_thread(accounts_of(portal).workspace, workspace_id)
    return web.json_response({"id": workspace.id,
                              "suspendedAt": _iso(workspace.suspended_at)})


async def suspend_user(request: web.Request) -> web.Response:
    portal, who = await service_admin(request)
    user_id = request.match_info["id"]
    suspended = (await read_body(request, USER_SUSPENSION))["suspended"]
    if suspended:
        console.refuse_self(who.user_id, user_id)
    at = portal.store.clock() if suspended else None
    store = accounts_of(portal)
    if await asyncio.to_thread(console.set_user_suspended, portal.store.db, user_id, at):
        if suspended:  # signed-in browsers end now; API tokens fail at their next use
            await asyncio.to_thread(store.end_sessions_of, user_id)
        await audit.arecord(portal.store.db, actor=who.actor,
                            action="user.suspend" if suspended else "user.resume",
                            subject=f"user:{user_id}", details={})
    user = await asyncio.to_thread(store.user, user_id)
    return web.json_response({"id": user.id, "suspendedAt": _iso(user.suspended_at)})


async def usage(request: web.Request) -> web.Response:
    portal, _ = await service_admin(request)
    months = _number(request, "months", USAGE_MONTHS, 1, 60)
    now = portal.store.clock()
    back = now.year * 12 + now.month - 1 - (months - 1)  # months since year 0, 0-based
    first = dt.datetime(back // 12, back % 12 + 1, 1, tzinfo=dt.UTC)
    rows = await asyncio.to_thread(console.usage, portal.store.db, first)
    return web.json_response({"since": first.date().isoformat(),
                              "usage": [row.as_json() for row in rows]})


async def audit_log(request: web.Request) -> web.Response:
    portal, _ = await service_admin(request)
    before = _number(request, "before", 2**62, 1, 2**62)
    limit = _number(request, "limit", AUDIT_PAGE, 1, 500)
    entries = await asyncio.to_thread(audit.entries, portal.store.db, before=before,
                                      limit=limit)
    anchored = await asyncio.to_thread(  # as qsign portal audit verify: the kept head too
        audit.read_anchor, portal.config.state_dir / audit.ANCHOR_FILE)
    verified = await asyncio.to_thread(audit.verify, portal.store.db, expect=anchored)
    return web.json_response({"verify": verified.as_json(),
                              "entries": [e.as_json() for e in entries]})
