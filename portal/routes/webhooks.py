"""A workspace's advanced parameters (portal/API.md "Webhooks", "Mail settings"): its
webhooks with their delivery log, and the sender name and texts of the mails its signers
receive. Admins and owners manage them; every change goes to the audit log."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import web

from portal.accounts import Principal, Role
from portal.audit import arecord
from portal.body_schema import openapi_request
from portal.errors import Code, PortalError
from portal.routes.access import member
from portal.routes.parse import iso, read_body
from portal.routes.state import Portal
from portal.store.webhooks import DeliveryLog, Webhook
from portal.store.workspace_mail import MailSettings
from portal.webhooks import check_url
from portal.workspace_mail import PLACEHOLDERS, unknown_placeholders

_PATH = "/api/v1/workspaces/{ws}/webhooks"
NEW_WEBHOOK = openapi_request(_PATH, "post")
WEBHOOK_UPDATE = openapi_request(_PATH + "/{hook}", "patch")
MAIL_SETTINGS = openapi_request("/api/v1/workspaces/{ws}/mail", "put")


def webhook_json(hook: Webhook, *, secret: bool = False) -> dict[str, Any]:
    """A webhook; its secret only in the answer that made it (shown once)."""
    return {"id": hook.id, "url": hook.url, "events": list(hook.events),
            "createdBy": hook.created_by, "createdAt": iso(hook.created_at),
            **({"secret": hook.secret} if secret else {})}


def delivery_json(entry: DeliveryLog) -> dict[str, Any]:
    return {"id": entry.id, "event": entry.event, "transactionId": entry.transaction_id,
            "createdAt": iso(entry.created_at), "state": entry.state,
            "nextAttemptAt": iso(entry.next_at),
            "attempts": [{"attempt": a.attempt, "at": iso(a.at), "status": a.status,
                          "body": a.body, "error": a.error} for a in entry.attempts]}


async def _admin(request: web.Request) -> tuple[Portal, Principal, str]:
    workspace = request.match_info["ws"]
    portal, who, _ = await member(request, workspace, Role.ADMIN)
    return portal, who, workspace


async def _audit(portal: Portal, who: Principal, action: str, hook: Webhook) -> None:
    await arecord(portal.store.db, actor=who.actor, action=action,
                  subject=f"webhook:{hook.id}",
                  details={"workspace": hook.workspace_id, "url": hook.url,
                           "events": list(hook.events)})


async def list_webhooks(request: web.Request) -> web.Response:
    portal, _, workspace = await _admin(request)
    hooks = await asyncio.to_thread(portal.store.webhooks, workspace)
    return web.json_response({"webhooks": [webhook_json(h) for h in hooks]})


async def create_webhook(request: web.Request) -> web.Response:
    portal, who, workspace = await _admin(request)
    fields = await read_body(request, NEW_WEBHOOK)
    await asyncio.to_thread(check_url, fields["url"], portal.config.webhook_url_prefixes)
    hook = await asyncio.to_thread(portal.store.add_webhook, workspace, fields["url"],
                                   fields["events"], "whsec_" + secrets.token_urlsafe(32),
                                   who.user_id)
    await _audit(portal, who, "webhook.create", hook)
    return web.json_response(webhook_json(hook, secret=True), status=201)


async def get_webhook(request: web.Request) -> web.Response:
    portal, _, workspace = await _admin(request)
    hook = await asyncio.to_thread(portal.store.webhook, workspace,
                                   request.match_info["hook"])
    return web.json_response(webhook_json(hook))


async def update_webhook(request: web.Request) -> web.Response:
    portal, who, workspace = await _admin(request)
    fields = await read_body(request, WEBHOOK_UPDATE)
    if "url" in fields:
        await asyncio.to_thread(check_url, fields["url"], portal.config.webhook_url_prefixes)
    hook = await asyncio.to_thread(portal.store.update_webhook, workspace,
                                   request.match_info["hook"], url=fields.get("url"),
                                   events=fields.get("events"))
    await _audit(portal, who, "webhook.update", hook)
    return web.json_response(webhook_json(hook))


async def delete_webhook(request: web.Request) -> web.Response:
    portal, who, workspace = await _admin(request)
    hook = await asyncio.to_thread(portal.store.webhook, workspace,
                                   request.match_info["hook"])
    await asyncio.to_thread(portal.store.delete_webhook, workspace, hook.id)
    await _audit(portal, who, "webhook.delete", hook)
    return web.Response(status=204)


async def webhook_deliveries(request: web.Request) -> web.Response:
    portal, _, workspace = await _admin(request)
    log = await asyncio.to_thread(portal.store.delivery_log, workspace,
                                  request.match_info["hook"])
    return web.json_response({"deliveries": [delivery_json(d) for d in log]})


async def get_mail_settings(request: web.Request) -> web.Response:
    workspace = request.match_info["ws"]
    portal, _, _ = await member(request, workspace, Role.VIEWER)
    settings = await asyncio.to_thread(portal.store.mail_settings, workspace)
    return web.json_response({"senderName": settings.sender_name, "texts": settings.texts,
                              "placeholders": list(PLACEHOLDERS)})


async def put_mail_settings(request: web.Request) -> web.Response:
    portal, who, workspace = await _admin(request)
    fields = await read_body(request, MAIL_SETTINGS)
    texts: dict[str, dict[str, str]] = fields.get("texts", {})
    for kind, text in texts.items():
        for part in ("subject", "body"):
            unknown = unknown_placeholders(text[part])
            if unknown:
                raise PortalError(Code.BAD_REQUEST, f"texts.{kind}.{part}: {{{unknown[0]}}} "
                                  f"is not one of {', '.join(PLACEHOLDERS)}",
                                  field=f"texts.{kind}.{part}")
        if "{url}" not in text["body"]:
            raise PortalError(Code.BAD_REQUEST, f"texts.{kind}.body: the link {{url}} is "
                              "required", field=f"texts.{kind}.body")
    settings = MailSettings((fields.get("senderName") or "").strip() or None, texts)
    await asyncio.to_thread(portal.store.set_mail_settings, workspace, settings)
    await arecord(portal.store.db, actor=who.actor, action="workspace.mail",
                  subject=f"workspace:{workspace}",
                  details={"senderName": settings.sender_name or "",
                           "texts": sorted(texts)})
    return web.json_response({"senderName": settings.sender_name, "texts": settings.texts,
                              "placeholders": list(PLACEHOLDERS)})
