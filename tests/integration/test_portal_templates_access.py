"""Who may use a workspace's templates, bulk sends, webhooks, mail settings and
transaction actions, over the real portal on loopback: a viewer reads but cannot save,
start, send in bulk, cancel or replace; a requester cannot manage webhooks; a member of
workspace A gets NOT_FOUND for every one of these routes with workspace B's identifiers,
as for identifiers that do not exist. The events of B's transactions reach only B's
webhooks."""

from __future__ import annotations

import base64
from typing import Any

from portal.accounts import Role
from tests.support.pdfs import blank_pdf
from tests.support.portal_service import RunningPortal, with_portal
from tests.support.workspace_members import call_as, member_token


def _new(title: str) -> dict[str, Any]:
    return {"title": title, "level": "B-B",
            "requester": {"name": "Ada", "email": "ada@example.test"},
            "documents": [{"name": "a.pdf",
                           "content": base64.b64encode(blank_pdf(1)).decode()}],
            "signers": [{"email": "s@example.test", "name": "Sam"}]}


@with_portal(webhook_url_prefixes=["http://127.0.0.1:9/"])
async def test_roles_and_workspaces_bound_every_route(portal: RunningPortal) -> None:
    a, requester_a = await member_token(portal, Role.REQUESTER)
    _, viewer_a = await member_token(portal, Role.VIEWER, a)
    b, owner_b = await member_token(portal, Role.OWNER)
    ws_a, ws_b = f"/api/v1/workspaces/{a}", f"/api/v1/workspaces/{b}"
    tx_b = await call_as(portal, owner_b, "POST", f"{ws_b}/transactions", 201, _new("B"))
    tpl_b = await call_as(portal, owner_b, "POST", f"{ws_b}/templates", 201,
                          {"name": "B's", "fromTransaction": tx_b["id"]})
    hook_b = await call_as(portal, owner_b, "POST", f"{ws_b}/webhooks", 201,
                           {"url": "http://127.0.0.1:9/b", "events": ["cancelled"]})
    bulk_b = await call_as(portal, owner_b, "POST", f"{ws_b}/templates/{tpl_b['id']}/bulk",
                           202, {"csv": "Sam.email\nx@example.test\n"})

    tx_a = await call_as(portal, requester_a, "POST", f"{ws_a}/transactions", 201, _new("A"))
    tpl_a = await call_as(portal, requester_a, "POST", f"{ws_a}/templates", 201,
                          {"name": "A's", "fromTransaction": tx_a["id"]})
    # A's member with B's identifiers, on A's routes and on B's: NOT_FOUND every time.
    signer_b = tx_b["signers"][0]["id"]
    for method, path, body in [
            ("POST", f"{ws_a}/templates", {"name": "x", "fromTransaction": tx_b["id"]}),
            ("GET", f"{ws_a}/templates/{tpl_b['id']}", None),
            ("PATCH", f"{ws_a}/templates/{tpl_b['id']}", {"name": "x"}),
            ("DELETE", f"{ws_a}/templates/{tpl_b['id']}", None),
            ("POST", f"{ws_a}/templates/{tpl_b['id']}/transactions",
             {"signers": [{"role": "Sam", "email": "y@example.test"}]}),
            ("POST", f"{ws_a}/templates/{tpl_b['id']}/bulk", {"csv": "Sam.email\na@b.test\n"}),
            ("GET", f"{ws_a}/bulk/{bulk_b['id']}", None),
            ("GET", f"{ws_b}/templates", None),
            ("GET", f"{ws_b}/webhooks/{hook_b['id']}/deliveries", None),
            ("GET", f"{ws_b}/mail", None),
            ("GET", f"/api/v1/transactions/{tx_b['id']}/parameters", None),
            ("POST", f"/api/v1/transactions/{tx_b['id']}/cancel", {}),
            ("POST", f"/api/v1/transactions/{tx_b['id']}/signers/{signer_b}/resend", None),
            ("PUT", f"/api/v1/transactions/{tx_b['id']}/signers/{signer_b}",
             {"email": "z@example.test"}),
            ("POST", f"{ws_a}/transactions/{tx_b['id']}/cancel", {})]:
        refused = await call_as(portal, requester_a, method, path, 404, body)
        assert refused["error"] == "NOT_FOUND", (method, path)
    assert portal.store.transaction(tx_b["id"]).status.value == "open"
    # A's viewer reads, and may do nothing else.
    await call_as(portal, viewer_a, "GET", f"{ws_a}/templates/{tpl_a['id']}", 200)
    for method, path, body in [
            ("POST", f"{ws_a}/templates", {"name": "x", "fromTransaction": tx_a["id"]}),
            ("POST", f"{ws_a}/templates/{tpl_a['id']}/transactions",
             {"signers": [{"role": "Sam", "email": "y@example.test"}]}),
            ("POST", f"{ws_a}/templates/{tpl_a['id']}/bulk", {"csv": "Sam.email\na@b.test\n"}),
            ("POST", f"/api/v1/transactions/{tx_a['id']}/cancel", {}),
            ("PUT", f"/api/v1/transactions/{tx_a['id']}/signers/"
                    f"{tx_a['signers'][0]['id']}", {"email": "z@example.test"}),
            ("GET", f"{ws_a}/webhooks", None)]:
        refused = await call_as(portal, viewer_a, method, path, 403, body)
        assert refused["error"] == "FORBIDDEN", (method, path)
    # A requester does not manage webhooks; the owner of B does.
    await call_as(portal, requester_a, "POST", f"{ws_a}/webhooks", 403,
                  {"url": "http://127.0.0.1:9/a", "events": ["signed"]})
    await call_as(portal, requester_a, "POST", f"/api/v1/transactions/{tx_a['id']}/cancel",
                  200, {})
    assert not portal.store.delivery_log(b, hook_b["id"])  # A's event is not B's
    await call_as(portal, owner_b, "POST", f"/api/v1/transactions/{tx_b['id']}/cancel", 200,
                  {})
    assert [d.event for d in portal.store.delivery_log(b, hook_b["id"])] == ["cancelled"]
