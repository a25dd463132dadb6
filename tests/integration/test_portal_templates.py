"""Templates and bulk send over the real portal on loopback (SQLite and PostgreSQL): a
template saved from a transaction starts a new one with its roles filled; a CSV with a
bad line is refused whole, naming the line and column; a good one makes one transaction
per line, and a bulk send whose rows were left pending by a stopped portal is finished
by the next one from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from portal.routes import bulk
from portal.store import Store
from tests.support.portal_service import RunningPortal, running_portal, with_portal
from tests.support.waiting import wait_until_async

WS = "/api/v1/workspaces/default"
REQUESTER = {"name": "Agence Dupont", "email": "agence@example.test"}


async def _template(portal: RunningPortal) -> dict[str, Any]:
    """A template from a two-signer transaction in groups, its roles renamed."""
    tx = await portal.create(signers=[
        {"name": "Tenant", "email": "t@example.test", "group": 1},
        {"name": "Guarantor", "email": "g@example.test", "group": 1,
         "appearance": {"page": 1, "rect": [50, 50, 250, 110]}},
        {"name": "Landlord", "email": "l@example.test", "group": 2}],
        documents=1, signingOrder="groups", reminderDays=3, downloadUnsigned=False)
    template: dict[str, Any] = await portal.call(
        "POST", WS + "/templates", {"name": "Lease", "fromTransaction": tx["id"]},
        auth=True, expect=201)
    assert [r["role"] for r in template["roles"]] == ["Tenant", "Guarantor", "Landlord"]
    assert [r.get("group") for r in template["roles"]] == [1, 1, 2]
    assert template["parameters"]["signingOrder"] == "groups"
    assert template["parameters"]["downloadUnsigned"] is False
    return template


@with_portal()
async def test_a_template_from_a_transaction_starts_another(portal: RunningPortal) -> None:
    template = await _template(portal)
    edited = await portal.call("PATCH", f"{WS}/templates/{template['id']}",
                               {"revision": template["revision"], "title": "Lease 2027"},
                               auth=True)
    assert edited["revision"] == template["revision"] + 1
    stale = await portal.call("PATCH", f"{WS}/templates/{template['id']}",
                              {"revision": template["revision"], "name": "x"}, auth=True,
                              expect=409)
    assert stale["error"] == "CONFLICT"
    missing = await portal.call("POST", f"{WS}/templates/{template['id']}/transactions", {
        "requester": REQUESTER, "signers": [{"role": "Tenant", "email": "a@example.test"}]},
        auth=True, expect=400)
    assert missing["field"] == "signers" and "Guarantor" in missing["message"]
    signers = [{"role": "Tenant", "email": "t2@example.test"},
               {"role": "Guarantor", "email": "g2@example.test"},
               {"role": "Landlord", "email": "l2@example.test"}]
    lta = await portal.call("PATCH", f"{WS}/templates/{template['id']}", {
        "revision": edited["revision"],
        "parameters": {**edited["parameters"], "level": "B-LTA"}}, auth=True)
    # This portal has no time-stamping service: the level is refused by name, and no
    # transaction is made from the template.
    before = len(portal.store.transactions())
    unavailable = await portal.call(
        "POST", f"{WS}/templates/{template['id']}/transactions",
        {"requester": REQUESTER, "signers": signers}, auth=True, expect=422)
    assert (unavailable["error"], unavailable["field"]) == ("LEVEL_UNAVAILABLE", "level")
    assert len(portal.store.transactions()) == before
    await portal.call("PATCH", f"{WS}/templates/{template['id']}", {
        "revision": lta["revision"], "parameters": edited["parameters"]}, auth=True)
    tx = await portal.call("POST", f"{WS}/templates/{template['id']}/transactions", {
        "requester": REQUESTER, "signers": [
            {"role": "Landlord", "email": "l2@example.test", "name": "Léa Landlord"},
            {"role": "Tenant", "email": "t2@example.test"},
            {"role": "Guarantor", "email": "g2@example.test"}]}, auth=True, expect=201)
    assert tx["title"] == "Lease 2027"
    assert [(s["email"], s["status"]) for s in tx["signers"]] == [
        ("t2@example.test", "invited"), ("g2@example.test", "invited"),
        ("l2@example.test", "waiting")]  # the groups: the landlord's turn comes second
    kept = await portal.call("GET", f"/api/v1/transactions/{tx['id']}/parameters", auth=True)
    assert kept["signingOrder"] == "groups" and kept["reminderDays"] == 3
    assert kept["templateId"] == template["id"]
    assert kept["signers"][1]["appearance"] == {"page": 1, "rect": [50, 50, 250, 110]}
    invited = {m["to"] for m in (await portal.call("GET", "/api/v1/outbox",
                                                   auth=True))["mail"]}
    assert {"t2@example.test", "g2@example.test"} <= invited
    assert "l2@example.test" not in invited


@with_portal()
async def test_a_csv_with_a_bad_line_is_refused_naming_it(portal: RunningPortal) -> None:
    template = await _template(portal)
    path = f"{WS}/templates/{template['id']}/bulk"
    header = "Tenant.email,Tenant.name,Guarantor.email,Landlord.email,Landlord.lang\n"
    refused = await portal.call("POST", path, {"requester": REQUESTER, "csv": header
                                               + "a@example.test,Ann,b@example.test,"
                                               "c@example.test,en\n"
                                               "d@example.test,Dan,not-an-address,"
                                               "f@example.test,de\n"}, auth=True,
                                expect=400)
    assert refused["error"] == "CSV_INVALID"
    assert [(e["line"], e["column"]) for e in refused["errors"]] == [
        (3, "Guarantor.email"), (3, "Landlord.lang")]
    unknown = await portal.call("POST", path, {
        "requester": REQUESTER, "csv": "Tenant.email,Pet.email\nx@y.test,z@y.test\n"},
        auth=True, expect=400)
    assert {(e["line"], e["column"]) for e in unknown["errors"]} >= {
        (1, "Pet.email"), (1, "Guarantor.email"), (1, "Landlord.email")}
    sent = await portal.call("POST", path, {"requester": REQUESTER, "csv": header
                                            + "a@example.test,Ann,b@example.test,"
                                            "c@example.test,en\n"
                                            "d@example.test,Dan,e@example.test,"
                                            "f@example.test,fr\n"}, auth=True, expect=202)
    assert sent["total"] == 2

    async def finished() -> Any:
        view = await portal.call("GET", f"{WS}/bulk/{sent['id']}", auth=True)
        return view if view["done"] == 2 else None

    view = await wait_until_async(finished, "both lines sent")
    for row, tenant in zip(view["rows"], ("a@example.test", "d@example.test"), strict=True):
        tx = await portal.call("GET", f"/api/v1/transactions/{row['transactionId']}",
                               auth=True)
        assert tx["signers"][0]["email"] == tenant


def test_a_bulk_send_left_pending_is_finished_after_a_restart(tmp_path: Path) -> None:
    """Rows kept in the store while no portal runs, one of them leased by a process that
    died mid-line: the next portal sends every line, once, the leased one when its lease
    ran out."""
    async def main() -> None:
        async with running_portal(tmp_path) as first:
            template = await _template(first)
        store = Store.open(None, first.config.state_dir)
        try:
            kept = store.template("default", template["id"])
            rows = [(n, [{"role": "Tenant", "email": f"t{n}@example.test"},
                         {"role": "Guarantor", "email": f"g{n}@example.test"},
                         {"role": "Landlord", "email": f"l{n}@example.test"}])
                    for n in (2, 3, 4)]
            sent = store.add_bulk(kept, REQUESTER, "bootstrap", rows)
            [leased] = store.lease_bulk_rows(limit=1)  # then the process died
        finally:
            store.close()
        async with running_portal(tmp_path) as second:
            def states() -> list[str]:
                return [r.state for r in second.store.bulk("default", sent.id).rows]

            await wait_until_async(lambda: states().count("done") == 2, "the free rows")
            assert states()[leased.line - 2] == "pending"  # its lease still runs
            second.clock.advance(minutes=6)
            second.state.bulk_wake.set()
            await wait_until_async(lambda: states() == ["done"] * 3, "the leased row")
            assert await bulk.work(second.state) == 0  # nothing is sent twice
            done = second.store.bulk("default", sent.id)
            assert len({r.transaction_id for r in done.rows}) == 3
            assert len(second.store.transactions()) == 4  # the template's and the three

    asyncio.run(main())
