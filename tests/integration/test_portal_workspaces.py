"""Workspaces keep their transactions to themselves: a member of workspace A, by API
token on every route the portal has that names a workspace or a transaction (the
workspace-scoped ones, templates, webhooks and members included, and the
`/api/v1/transactions` ones), gets NOT_FOUND for anything of workspace B; a viewer reads
but cannot write; a token stops at its expiry and revocation; the bootstrap token (the
service administrator) sees every workspace."""

from __future__ import annotations

import re
from typing import Any

from portal.accounts import Role
from tests.support.accounts import (
    Requester,
    accounts,
    api_token,
    new_transaction,
    requester_in,
)
from tests.support.portal_service import RunningPortal, with_portal

_PLACEHOLDER = re.compile(r"\{(\w+)(?::[^}]*)?\}")


async def _as(portal: RunningPortal, who: Requester | None, method: str, path: str,
              body: Any = None) -> tuple[int, Any]:
    headers = who.auth() if who else portal.auth()
    async with portal.session.request(method, portal.url + path, json=body,
                                      headers=headers) as response:
        data = await (response.json() if response.content_type == "application/json"
                      else response.read())
        return response.status, data


def _workspace_routes(portal: RunningPortal) -> list[tuple[str, str]]:
    """(method, path template) of every route that names a transaction or a workspace,
    as the app has them (routes other parts add later are tried too)."""
    found = []
    for route in portal.server.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(("/api/v1/transactions", "/api/v1/workspaces/{ws}")):
            methods = ["GET", "POST"] if route.method == "*" else [route.method]
            found += [(m, path) for m in methods if m != "HEAD"]
    return found


@with_portal()
async def test_a_member_of_one_workspace_finds_nothing_of_another(
        portal: RunningPortal) -> None:
    a = requester_in(portal, "ann@example.test", Role.OWNER)
    b = requester_in(portal, "bob@example.test", Role.OWNER)
    status, mine = await _as(portal, a, "POST", "/api/v1/transactions",
                             new_transaction("A's lease"))
    assert status == 201, mine
    status, theirs = await _as(portal, b, "POST",
                               f"/api/v1/workspaces/{b.workspace}/transactions",
                               new_transaction("B's lease"))
    assert status == 201, theirs
    b_ids = {"ws": b.workspace, "id": theirs["id"], "doc": theirs["documents"][0]["id"],
             "signer": theirs["signers"][0]["id"], "user": b.user.id}

    routes = _workspace_routes(portal)
    assert len(routes) >= 16  # both families, every method, the workspace's own
    for method, template in routes:
        if "{" not in template:
            continue  # /api/v1/transactions: A's own workspace, looked at below
        path = _PLACEHOLDER.sub(lambda m: b_ids.get(m.group(1), "x"), template)
        status, answer = await _as(portal, a, method, path, {"text": "hello"})
        assert (status, answer["error"]) == (404, "NOT_FOUND"), (method, path, answer)
        # B's transaction through A's own workspace path: not found either
        own = path.replace(f"/workspaces/{b.workspace}/", f"/workspaces/{a.workspace}/")
        if own != path and "{id}" in template:
            status, answer = await _as(portal, a, method, own, {"text": "hello"})
            assert (status, answer["error"]) == (404, "NOT_FOUND"), (method, own, answer)

    for path in ("/api/v1/transactions", f"/api/v1/workspaces/{a.workspace}/transactions"):
        status, listed = await _as(portal, a, "GET", path)
        assert status == 200
        assert [t["title"] for t in listed["transactions"]] == ["A's lease"]
    # B itself still sees its own, and the service administrator sees both
    status, got = await _as(portal, b, "GET", f"/api/v1/transactions/{theirs['id']}")
    assert (status, got["title"]) == (200, "B's lease")
    status, listed = await _as(portal, None, "GET", "/api/v1/transactions")
    assert {t["title"] for t in listed["transactions"]} == {"A's lease", "B's lease"}
    status, got = await _as(portal, None, "GET",
                            f"/api/v1/workspaces/{b.workspace}/transactions/{theirs['id']}")
    assert (status, got["title"]) == (200, "B's lease")


@with_portal()
async def test_a_viewer_reads_but_cannot_create_or_write(portal: RunningPortal) -> None:
    owner = requester_in(portal, "olga@example.test", Role.OWNER)
    viewer = requester_in(portal, "vic@example.test", Role.VIEWER, owner.workspace)
    status, tx = await _as(portal, owner, "POST", "/api/v1/transactions",
                           new_transaction("Lease"))
    assert status == 201
    status, got = await _as(portal, viewer, "GET", f"/api/v1/transactions/{tx['id']}")
    assert (status, got["title"]) == (200, "Lease")
    status, refused = await _as(portal, viewer, "POST", "/api/v1/transactions",
                                new_transaction("Mine"))
    assert (status, refused["error"]) == (403, "FORBIDDEN")
    status, refused = await _as(portal, viewer, "POST",
                                f"/api/v1/transactions/{tx['id']}/messages", {"text": "hi"})
    assert (status, refused["error"]) == (403, "FORBIDDEN")


@with_portal()
async def test_an_api_token_stops_at_expiry_and_revocation(portal: RunningPortal) -> None:
    owner = requester_in(portal, "olga@example.test", Role.OWNER)
    assert (await _as(portal, owner, "GET", "/api/v1/transactions"))[0] == 200
    [token] = accounts(portal).tokens_of(owner.user.id)
    accounts(portal).revoke_token(owner.user.id, token.id)
    status, answer = await _as(portal, owner, "GET", "/api/v1/transactions")
    assert (status, answer["error"]) == (401, "UNAUTHORIZED")

    short = Requester(owner.user, owner.workspace,
                      api_token(portal, owner.user.id, owner.workspace, days=1))
    assert (await _as(portal, short, "GET", "/api/v1/transactions"))[0] == 200
    portal.clock.advance(days=1)
    status, answer = await _as(portal, short, "GET", "/api/v1/transactions")
    assert (status, answer["error"]) == (401, "UNAUTHORIZED")
