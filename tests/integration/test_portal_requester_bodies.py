"""Bad input on the requester side's new API bodies (issue 15): workspaces, templates
(new, edited, started), bulk send, webhooks (new, edited), a workspace's accepted
identity documents and mail settings, the console's suspensions, a transaction's
cancellation and a signer replaced. Each wrong type, missing field, unknown field or
value outside its rule is a typed BAD_REQUEST whose `field` and `rule` name what broke,
never echoing the value (test_portal_body_schemas's check); each valid body is then
accepted. The accounts' own bodies (invitations, members, tokens, settings) are
test_portal_sign_in's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from portal.accounts import Role
from tests.integration.test_portal_body_schemas import (
    NUMBER,
    SECRET,
    Bad,
    Route,
    _refused,
    missing,
    unknown,
    wrong,
)
from tests.support.accounts import new_transaction, requester_in
from tests.support.portal_service import RunningPortal, running_portal

Refusal = tuple[str, str, dict[str, Any], str]
HOOK = "http://127.0.0.1:9/hook"  # under the allowed prefix; never answered


async def _routes(portal: RunningPortal) -> tuple[list[Route], list[Refusal]]:
    """The routes with a valid body and its bad variants, and the domain refusals."""
    ws = (await portal.call("POST", "/api/v1/workspaces", {"name": "Agence"}, auth=True,
                            expect=201))["id"]
    at = f"/api/v1/workspaces/{ws}"
    tx = await portal.call("POST", at + "/transactions", new_transaction("Lease"),
                           auth=True, expect=201)
    template = await portal.call("POST", at + "/templates",
                                 {"name": "Lease", "fromTransaction": tx["id"]}, auth=True,
                                 expect=201)
    hook = await portal.call("POST", at + "/webhooks", {"url": HOOK, "events": ["signed"]},
                             auth=True, expect=201)
    user = requester_in(portal, "ann@example.test", Role.REQUESTER, ws).user.id
    tpl, role = f"{at}/templates/{template['id']}", template["roles"][0]["role"]
    requester = {"name": "Agence", "email": "agence@example.test"}
    suspension = (wrong(["suspended"], "suspended"), missing(["suspended"], "suspended"),
                  unknown(["until"], "until"))
    routes = [
        Route("POST", "/api/v1/workspaces", "requester", {"name": "Beta"}, (
            wrong(["name"], "name", NUMBER), missing(["name"], "name"),
            unknown(["owner"], "owner"), Bad(["name"], "   ", "name", "pattern"))),
        Route("POST", at + "/templates", "requester",
              {"name": "Copy", "fromTransaction": tx["id"]}, (
                  wrong(["name"], "name", NUMBER), missing(["name"], "name"),
                  unknown(["owner"], "owner"))),
        Route("PATCH", tpl, "requester", {"name": "Lease 2", "revision": 1}, (
            wrong(["revision"], "revision"), unknown(["workspace"], "workspace"),
            Bad(["name"], "", "name", "minLength"))),
        Route("POST", tpl + "/transactions", "requester",
              {"signers": [{"role": role, "email": "t@example.test"}],
               "requester": requester}, (
                  wrong(["signers", 0, "email"], "signers[0].email", NUMBER),
                  missing(["signers"], "signers"),
                  unknown(["signers", 0, "group"], "signers[0].group"))),
        Route("POST", tpl + "/bulk", "requester",
              {"csv": f"{role}.email\nt@example.test\n", "requester": requester}, (
                  wrong(["csv"], "csv", NUMBER), missing(["csv"], "csv"),
                  unknown(["rows"], "rows"))),
        Route("POST", at + "/webhooks", "requester", {"url": HOOK, "events": ["signed"]}, (
            Bad(["events", 0], "opened", "events[0]", "enum"), missing(["url"], "url"),
            unknown(["secret"], "secret"))),
        Route("PATCH", f"{at}/webhooks/{hook['id']}", "requester",
              {"events": ["signed", "completed"]}, (
                  wrong(["events"], "events"), unknown(["secret"], "secret"))),
        Route("PUT", at + "/identity-documents", "requester",
              {"accepted": {"FRA": ["passport"]}}, (
                  wrong(["accepted"], "accepted"), missing(["accepted"], "accepted"),
                  unknown(["states"], "states"))),
        Route("PUT", at + "/mail", "requester", {"senderName": "Agence Dupont"}, (
            wrong(["senderName"], "senderName", NUMBER), unknown(["from"], "from"))),
        Route("POST", f"/api/v1/console/workspaces/{ws}/suspension", "requester",
              {"suspended": False}, suspension),
        Route("POST", f"/api/v1/console/users/{user}/suspension", "requester",
              {"suspended": False}, suspension),
        Route("PUT", f"{at}/transactions/{tx['id']}/signers/{tx['signers'][0]['id']}",
              "requester", {"email": "new@example.test"}, (
                  wrong(["email"], "email", NUMBER), missing(["email"], "email"),
                  unknown(["order"], "order"))),
        Route("POST", f"{at}/transactions/{tx['id']}/cancel", "requester",
              {"reason": "a typo"}, (
                  wrong(["reason"], "reason", NUMBER), unknown(["notify"], "notify"))),
    ]
    return routes, _domain_refusals(at, tpl)


def _domain_refusals(at: str, tpl: str) -> list[Refusal]:
    """Bodies within their schema that the route's own checks refuse: (method, path,
    body, the field named); `at` is the workspace's API path, `tpl` a template's."""
    return [
        ("PUT", at + "/mail", {"texts": {"invite": {
            "subject": "Sign {title}", "body": "Hello {name.__class__} {url}"}}},
         "texts.invite.body"),
        ("PUT", at + "/mail", {"texts": {"invite": {"subject": "Sign", "body": "no link"}}},
         "texts.invite.body"),
        ("PUT", at + "/identity-documents", {"accepted": {"ZZZ": ["passport"]}},
         "accepted.ZZZ"),
        ("PATCH", tpl, {"roles": [{"role": "A"}, {"role": "A"}]}, "roles[1].role"),
        ("POST", at + "/webhooks", {"url": "http://127.0.0.1:1/elsewhere",
                                    "events": ["signed"]}, "url"),
    ]


def test_every_new_requester_body_is_refused_naming_its_field(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path,
                                  webhook_url_prefixes=[HOOK.rsplit("/", 1)[0] + "/"]
                                  ) as portal:
            routes, refusals = await _routes(portal)
            for method, path, body, field in refusals:
                answer = await portal.call(method, path, body, auth=True, expect=400)
                assert (answer["error"], answer["field"]) == ("BAD_REQUEST", field), answer
            for route in routes:
                await _refused(portal.session, portal.url + route.path, route, portal.auth())
                # the valid body passes (cancel last: it closes the transaction)
                async with portal.session.request(route.method, portal.url + route.path,
                                                  json=route.valid,
                                                  headers=portal.auth()) as response:
                    text = await response.text()
                    assert response.status < 300, (route.method, route.path, text)
                    assert SECRET not in text

    asyncio.run(main())
