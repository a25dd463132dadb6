"""The requester's side (issue 15 acceptance) in Chromium, on the portal served on
loopback with a real SMTP server (aiosmtpd) and a webhook receiver (aiohttp) there too.

The journey: the service administrator (the bootstrap token, which has no session, so
through the API) creates a workspace, adds a webhook for every event and invites two
requesters; each opens the mailed /join/ link in Chromium, chooses a password and
enrols TOTP from the key the page shows. The first makes a two-signer sequential B-LTA
transaction in /requester and saves it as a template in /templates; the second starts a
transaction from that template in /templates. The signers sign with the simulated card
through the agent as the signer's page would (tests/support/signing_stack.py: the
acceptance is the requester's side): the second signer's invitation arrives only after
the first signed; the receiver gets every event with a valid HMAC-SHA256 signature
(portal/API.md "Webhooks"); `qsign portal audit verify` passes, then names the entry an
SQL UPDATE changed.

Then workspaces apart: a viewer's pages and API calls cannot create or cancel; a
requester of workspace A, with their browser session and with their API token made in
/settings, tries every requester route of the portal's route table (app.router, so a
route added later is tried too) with workspace B's identifiers and gets NOT_FOUND, or
FORBIDDEN where portal/API.md says so, never B's data; A's pages opened at B's
identifiers show nothing of B."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

from playwright.async_api import FilePayload, Page, async_playwright

from portal.webhooks import SIGNATURE_HEADER, verify
from tests.integration.test_portal_webhooks import EVENTS, Receiver, receiving
from tests.support.chromium import launch_chromium
from tests.support.cli import run_qsign
from tests.support.pcsc import RunningCard
from tests.support.pdfs import blank_pdf
from tests.support.portal_e2e import check_page, ready, until
from tests.support.portal_service import RunningPortal
from tests.support.requester_pages import join
from tests.support.signing_stack import OnStack, Stack, with_stack
from tests.support.smtp_sink import SmtpSink, smtp_sink
from tests.support.waiting import wait_until_async

RITA, REMI = "rita@example.test", "remi@example.test"  # the two requesters
ALICE, BOB = "alice@example.test", "bob@example.test"  # the signers (the card's names)


async def _admin(portal: RunningPortal, method: str, path: str, body: Any = None,
                 expect: int = 200) -> Any:
    return await portal.call(method, path, body, auth=True, expect=expect)


async def _make_template(page: Page, portal: RunningPortal, ws: str) -> dict[str, Any]:
    """Rita's transaction from the /requester form (two signers in order, B-LTA), saved
    as the template "Lease" in /templates; the template as the API shows it."""
    await page.goto(f"{portal.url}/requester?lang=en")
    await ready(page)
    await page.locator("#create:not([hidden])").wait_for()
    await page.fill("#title", "Lease (model)")
    await page.fill("#req-name", "Rita Lopez")
    await page.fill("#req-email", RITA)
    pdf: FilePayload = {"name": "lease.pdf", "mimeType": "application/pdf",
                        "buffer": blank_pdf(1)}
    await page.set_input_files("#documents", files=[pdf])
    await page.click("#add-signer")
    rows = page.locator("#signers .signer-row")
    for index, (role, email) in enumerate((("Tenant", "model-t@example.test"),
                                           ("Landlord", "model-l@example.test"))):
        await rows.nth(index).locator("[data-field=name]").fill(role)
        await rows.nth(index).locator("[data-field=email]").fill(email)
    assert await page.is_checked("#sequential")
    await page.select_option("#level", "B-LTA")
    await page.click("#create-submit")
    await page.locator("#detail:not([hidden])").wait_for()
    [model] = (await _admin(portal, "GET", "/api/v1/transactions"))["transactions"]

    await page.goto(f"{portal.url}/templates?lang=en")
    await ready(page)
    await page.locator("#templates-page:not([hidden])").wait_for()
    await page.fill("#save-name", "Lease")
    await page.fill("#save-tx", model["id"])
    await page.click("#save-submit")
    await page.locator("#template-list li").wait_for()
    await check_page(page)
    [template] = (await _admin(portal, "GET", f"/api/v1/workspaces/{ws}/templates")
                  )["templates"]
    return dict(template)


async def _start_from_template(page: Page, portal: RunningPortal) -> None:
    """Rémi fills the template's two roles in /templates and sends."""
    await page.goto(f"{portal.url}/templates?lang=en")
    await ready(page)
    await page.locator("#template-list li button").click()
    await page.fill("#use-title", "Lease, 3 rue Monge")
    for index, (name, email, phone) in enumerate((
            ("Alice Martin", ALICE, "+33612345670"), ("Bob Durand", BOB, "+33612345671"))):
        await page.fill(f"#role-{index}-name", name)
        await page.fill(f"#role-{index}-email", email)
        await page.fill(f"#role-{index}-phone", phone)
    await page.click("#use-submit")
    await until(page, "document.querySelector('#use-status').dataset.kind === 'ok'")


def _mailed(sink: SmtpSink, address: str) -> bool:
    return bool(sink.to(address))


def _audit_cli(state: Path) -> tuple[int, str]:
    config = state.parent / "audit-portal.toml"
    config.write_text(f'[portal]\nstate_dir = "{state}"\n')
    done = run_qsign("portal", "audit", "verify", "--config", str(config))
    return done.returncode, done.stdout + done.stderr


def test_two_requesters_a_template_and_a_sequential_b_lta_transaction(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    receiver = Receiver(failures=0)

    async def scenario(stack: Stack, sink: SmtpSink, url: str) -> None:
        portal = stack.portal
        ws = (await _admin(portal, "POST", "/api/v1/workspaces", {"name": "Agence Dupont"},
                           expect=201))["id"]
        hook = await _admin(portal, "POST", f"/api/v1/workspaces/{ws}/webhooks",
                            {"url": url, "events": EVENTS}, expect=201)
        for email in (RITA, REMI):
            await _admin(portal, "POST", f"/api/v1/workspaces/{ws}/invitations",
                         {"email": email, "role": "requester"}, expect=201)
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                rita = await (await browser.new_context()).new_page()
                remi = await (await browser.new_context()).new_page()
                await join(rita, portal, sink, RITA, "Rita Lopez")
                await join(remi, portal, sink, REMI, "Rémi Blanc")
                members = (await _admin(portal, "GET", f"/api/v1/workspaces/{ws}"))["members"]
                assert {(m["email"], m["role"]) for m in members} >= {
                    (RITA, "requester"), (REMI, "requester")}

                template = await _make_template(rita, portal, ws)
                assert [r["role"] for r in template["roles"]] == ["Tenant", "Landlord"]
                assert template["parameters"]["level"] == "B-LTA"
                assert template["parameters"]["signingOrder"] == "sequential"
                await _start_from_template(remi, portal)
            finally:
                await browser.close()

        listed = (await _admin(portal, "GET", f"/api/v1/workspaces/{ws}/transactions"))
        [tx] = [t for t in listed["transactions"] if t["title"] == "Lease, 3 rue Monge"]
        assert (tx["level"], tx["requester"]["email"]) == ("B-LTA", REMI)
        assert [(s["email"], s["status"]) for s in tx["signers"]] == [
            (ALICE, "invited"), (BOB, "waiting")]
        await wait_until_async(lambda: _mailed(sink, ALICE), "Alice's invitation")
        assert not _mailed(sink, BOB)
        # The test portal's clock stands still: the pages took long enough that the CA's
        # OCSP answers would be newer than it (REVOCATION_UNKNOWN), so it catches up.
        portal.clock.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        await stack.sign(await stack.ready_to_sign(tx, 0))
        await wait_until_async(lambda: _mailed(sink, BOB), "Bob's invitation, his turn")
        after = await _admin(portal, "GET", f"/api/v1/transactions/{tx['id']}")
        await stack.reprovision("Bob", "Durand")  # the second signer's own card
        await stack.sign(await stack.ready_to_sign(after, 1))
        done = await _admin(portal, "GET", f"/api/v1/transactions/{tx['id']}")
        assert done["status"] == "completed"

        expected = [("viewed", 1), ("accepted", 1), ("signed", 1), ("viewed", 2),
                    ("accepted", 2), ("signed", 2), ("completed", None)]

        def of_tx() -> list[dict[str, Any]]:
            return [e for e in receiver.events(hook["secret"])
                    if e["data"]["transaction"]["id"] == tx["id"]]

        await wait_until_async(lambda: len(of_tx()) >= len(expected), "every event")
        for headers, raw in receiver.received:  # every request the receiver got
            assert verify(hook["secret"], headers[SIGNATURE_HEADER], raw, now=time.time())
        assert [(e["event"], e["data"].get("signer", {}).get("order"))
                for e in of_tx()] == expected

        state = portal.config.state_dir
        status, out = await asyncio.to_thread(_audit_cli, state)
        assert status == 0, out
        database = sqlite3.connect(state / "portal.sqlite")
        try:
            actions = {a for (a,) in database.execute("SELECT action FROM audit_log")}
            assert {"workspace.create", "workspace.invite", "workspace.join"} <= actions
            assert {a.split(".")[0] for a in actions} >= {"template", "webhook"}, actions
            [(seq,)] = database.execute("SELECT min(seq) FROM audit_log WHERE action LIKE "
                                        "'%invit%'").fetchall()
            database.execute("UPDATE audit_log SET subject = 'user:mallory' WHERE seq = ?",
                             (seq,))
            database.commit()
        finally:
            database.close()
        status, out = await asyncio.to_thread(_audit_cli, state)
        assert status == 1 and f"BROKEN at seq {seq}" in out, out

    async def run() -> None:
        with smtp_sink() as sink:
            async with receiving(receiver) as url:
                on_stack: OnStack = with_stack(
                    tmp_path, simulated_card, smtp_host="127.0.0.1", smtp_port=sink.port,
                    webhook_url_prefixes=[url])
                # The stack runs its own event loop; this one serves the receiver.
                await asyncio.to_thread(on_stack,
                                        lambda stack: scenario(stack, sink, url))

    asyncio.run(run())
