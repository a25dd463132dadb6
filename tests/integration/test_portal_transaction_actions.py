"""The requester's actions and a transaction's parameters over the real portal on
loopback (SQLite and PostgreSQL): cancel, resend an invitation, replace a signer who has
not signed (the old link dies), signers kept from unsigned downloads, reminders sent once
per due time however many portal processes look, typed errors naming the field, and the
signing order as the `Transaction` JSON says it (with the caller's role in the list)."""

from __future__ import annotations

import asyncio
from typing import Any

from portal.accounts import Role
from portal.routes.reminders import send_reminders
from tests.support.accounts import new_transaction
from tests.support.portal_service import RunningPortal, with_portal
from tests.support.workspace_members import call_as, member_token


def _mails_to(portal: RunningPortal, address: str) -> list[str]:
    return [m.subject for m in portal.store.mails(to=address)]


@with_portal()
async def test_cancel_resend_and_replace(portal: RunningPortal) -> None:
    tx = await portal.create(signers=2, documents=1, signingOrder="parallel")
    path = f"/api/v1/transactions/{tx['id']}"
    old_link = portal.invite_path(tx, 0)
    await portal.call("POST", f"{path}/signers/{tx['signers'][1]['id']}/resend", auth=True)
    assert len(_mails_to(portal, "s2@example.test")) == 2
    replaced = await portal.call("PUT", f"{path}/signers/{tx['signers'][0]['id']}", {
        "name": "Claire Neuve", "email": "claire@example.test"}, auth=True)
    assert replaced["signers"][0]["email"] == "claire@example.test"
    assert replaced["signers"][0]["status"] == "invited"
    assert (await portal.call("GET", f"/api/s/{old_link}", expect=410))["error"] \
        == "LINK_REVOKED"
    assert _mails_to(portal, "claire@example.test") == ["Documents to sign: Lease agreement"]
    await portal.call("GET", f"/api/s/{portal.invite_path(replaced, 0)}")
    cancelled = await portal.call("POST", f"{path}/cancel", {"reason": "wrong flat"},
                                  auth=True)
    assert cancelled["status"] == "cancelled"
    closed = await portal.call("POST", f"/api/s/{portal.invite_path(replaced, 1)}/refuse",
                               {"reason": "x"}, expect=409)
    assert closed["error"] == "TRANSACTION_CLOSED"
    again = await portal.call("POST", f"{path}/cancel", {}, auth=True, expect=409)
    assert again["error"] == "TRANSACTION_CLOSED"
    signed_off = await portal.call("PUT", f"{path}/signers/{tx['signers'][1]['id']}",
                                   {"email": "x@example.test"}, auth=True, expect=409)
    assert signed_off["error"] == "TRANSACTION_CLOSED"


@with_portal()
async def test_parameters_refused_name_their_field(portal: RunningPortal) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
             ({"signingOrder": "groups"}, "signers[0].group"),
             ({"signingOrder": "sequential",
               "signers": [{"email": "a@example.test", "group": 1}]}, "signers[0].group"),
             ({"reminderDays": 0}, "reminderDays"), ({"languages": ["de"]}, "languages[0]"),
             ({"secondFactor": "voice"}, "secondFactor"),
             ({"signers": [{"email": "a@example.test", "appearance": {"page": 1}}]},
              "signers[0].appearance.rect"),
             ({"signers": [{"email": "a@example.test",
                            "appearance": {"page": 1, "rect": [9, 9, 1, 1]}}]},
              "signers[0].appearance.rect")]
    for extra, field in cases:
        refused = await portal.call("POST", "/api/v1/transactions", {
            "title": "t", "requester": {"name": "r", "email": "r@example.test"},
            "documents": [{"name": "a.pdf", "content": ""}],
            "signers": [{"email": "a@example.test"}], **extra}, auth=True, expect=400)
        assert refused["error"] == "BAD_REQUEST" and refused["field"] == field, refused


@with_portal()
async def test_the_signer_page_follows_the_parameters(portal: RunningPortal) -> None:
    tx = await portal.create(signers=1, documents=1, downloadUnsigned=False,
                             languages=["fr"], secondFactor="totp")
    invite = portal.invite_path(tx, 0)
    view = (await portal.consent(invite))["transaction"]
    assert (view["languages"], view["secondFactor"], view["downloadUnsigned"]) == (
        ["fr"], "totp", False)
    doc = tx["documents"][0]["id"]
    refused = await portal.call("GET", f"/api/s/{invite}/documents/{doc}/download",
                                expect=403)
    assert refused["error"] == "DOWNLOAD_DISABLED"
    await portal.call("GET", f"/api/s/{invite}/documents.zip", expect=403)
    allowed = await portal.create(signers=1, documents=1)
    await portal.consent(portal.invite_path(allowed, 0))
    await portal.call("GET", f"/api/s/{portal.invite_path(allowed, 0)}/documents/"
                      f"{allowed['documents'][0]['id']}/download")


@with_portal()
async def test_reminders_go_once_per_due_time(portal: RunningPortal) -> None:
    await portal.create(signers=2, documents=1, reminderDays=2, signingOrder="parallel")
    await portal.create(signers=1, documents=1)  # no reminders asked
    assert await send_reminders(portal.state) == 0  # the first look schedules them
    portal.clock.advance(days=1)
    assert await send_reminders(portal.state) == 0
    portal.clock.advance(days=1, seconds=1)
    # Two processes look at once: each due reminder is claimed by one of them.
    sent = await asyncio.gather(send_reminders(portal.state), send_reminders(portal.state))
    assert sum(sent) == 2
    # each in the signer's language: s1 reads English, s2 French (portal.create)
    reminders = {m.to: m.subject for m in portal.store.mails()
                 if m.subject.startswith(("Reminder: ", "Rappel : "))}
    assert sorted(reminders) == ["s1@example.test", "s2@example.test"]
    assert reminders["s1@example.test"].startswith("Reminder: documents to sign: ")
    assert reminders["s2@example.test"].startswith("Rappel : documents à signer : ")
    assert await send_reminders(portal.state) == 0
    portal.clock.advance(days=2, seconds=1)
    assert await send_reminders(portal.state) == 2


def _order(tx: dict[str, Any]) -> tuple[str, bool, list[int | None], list[str]]:
    return (tx["signingOrder"], tx["sequential"], [s["group"] for s in tx["signers"]],
            [s["status"] for s in tx["signers"]])


@with_portal()
async def test_the_transaction_says_its_signing_order(portal: RunningPortal) -> None:
    """Groups, parallel and sequential as created, read back by id, in the list and
    after an action; `sequential` as before (true unless parallel)."""
    people = [{"name": f"Signer {g}{i}", "email": f"g{g}{i}@example.test", "group": g}
              for i, g in enumerate((2, 1, 2))]
    groups = await portal.create(signers=people, documents=1, signingOrder="groups")
    expected = ("groups", True, [2, 1, 2], ["waiting", "invited", "waiting"])
    assert _order(groups) == expected
    path = f"/api/v1/transactions/{groups['id']}"
    assert _order(await portal.call("GET", path, auth=True)) == expected
    replaced = await portal.call("PUT", f"{path}/signers/{groups['signers'][2]['id']}",
                                 {"email": "claire@example.test"}, auth=True)
    assert _order(replaced) == expected  # the new signer keeps the group
    parallel = await portal.create(signers=2, documents=1, signingOrder="parallel")
    sequential = await portal.create(signers=2, documents=1)
    listed = await portal.call("GET", "/api/v1/transactions", auth=True)
    assert listed["role"] == "owner"  # the service administrator owns every workspace
    orders = {tx["id"]: _order(tx) for tx in listed["transactions"]}
    assert orders == {
        groups["id"]: expected,
        parallel["id"]: ("parallel", False, [None, None], ["invited", "invited"]),
        sequential["id"]: ("sequential", True, [None, None], ["invited", "waiting"])}


@with_portal()
async def test_the_list_says_the_callers_role(portal: RunningPortal) -> None:
    """A page learns from the list what its caller may do: a viewer's token reads
    `viewer` (and cannot create), a requester's `requester`, at both routes."""
    ws, writer = await member_token(portal, Role.REQUESTER)
    _, reader = await member_token(portal, Role.VIEWER, ws)
    made = await call_as(portal, writer, "POST", "/api/v1/transactions", 201,
                         new_transaction("Lease"))
    await call_as(portal, reader, "POST", "/api/v1/transactions", 403,
                  new_transaction("Mine"))
    for token, role in ((writer, "requester"), (reader, "viewer")):
        for path in ("/api/v1/transactions", f"/api/v1/workspaces/{ws}/transactions"):
            listed = await call_as(portal, token, "GET", path, 200)
            assert (listed["role"], [t["id"] for t in listed["transactions"]]) == (
                role, [made["id"]]), path
