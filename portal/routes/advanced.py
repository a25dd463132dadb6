"""The routes and background tasks of a workspace's templates, bulk sends, webhooks and
the requester's actions on a transaction (issue 15; the service's help pages call them
"Manage templates", "Transaction parameters" and "Advanced parameters")."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from portal.routes import actions, bulk, reminders, templates, webhooks
from portal.routes.state import Portal

_WS = "/api/v1/workspaces/{ws}"


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get(_WS + "/templates", templates.list_templates)
    r.add_post(_WS + "/templates", templates.create_template)
    r.add_get(_WS + "/templates/{tpl}", templates.get_template)
    r.add_patch(_WS + "/templates/{tpl}", templates.update_template)
    r.add_delete(_WS + "/templates/{tpl}", templates.delete_template)
    r.add_post(_WS + "/templates/{tpl}/transactions", templates.start_from_template)
    r.add_post(_WS + "/templates/{tpl}/bulk", bulk.bulk_send)
    r.add_get(_WS + "/bulk/{bulk}", bulk.get_bulk)
    r.add_get(_WS + "/webhooks", webhooks.list_webhooks)
    r.add_post(_WS + "/webhooks", webhooks.create_webhook)
    r.add_get(_WS + "/webhooks/{hook}", webhooks.get_webhook)
    r.add_patch(_WS + "/webhooks/{hook}", webhooks.update_webhook)
    r.add_delete(_WS + "/webhooks/{hook}", webhooks.delete_webhook)
    r.add_get(_WS + "/webhooks/{hook}/deliveries", webhooks.webhook_deliveries)
    r.add_get(_WS + "/mail", webhooks.get_mail_settings)
    r.add_put(_WS + "/mail", webhooks.put_mail_settings)
    # Each transaction action under the workspace and under /api/v1 (as requester.py's).
    for base in ("/api/v1", _WS):
        r.add_get(base + "/transactions/{id}/parameters", actions.transaction_parameters)
        r.add_post(base + "/transactions/{id}/cancel", actions.cancel_transaction)
        r.add_post(base + "/transactions/{id}/signers/{signer}/resend",
                   actions.resend_invitation)
        r.add_put(base + "/transactions/{id}/signers/{signer}", actions.replace_signer)


def background(portal: Portal) -> list[tuple[str, Coroutine[Any, Any, None]]]:
    """The tasks each portal process runs: webhook deliveries, bulk rows, reminders."""
    return [("webhooks", portal.webhooks.run()), ("bulk", bulk.run(portal)),
            ("reminders", reminders.reminders(portal))]
