"""The requester's side (issue 15 acceptance) in Chromium, on the portal served on
loopback with a real SMTP server (aiosmtpd) and a webhook receiver (aiohttp) there too.

The journey: the service administrator (the bootstrap token) creates a workspace and
invites two requesters through the API (the token has no session for /workspace, and
/console neither creates nor invites), and adds a webhook for every event in /advanced;
each requester opens the mailed /join/ link in Chromium, chooses a password and
enrols TOTP from the key the page shows. The first makes a two-signer sequential B-LTA
transaction in /requester and saves it as a template in /templates; the second starts a
transaction from that template in /templates. The signers sign with the simulated card
through the agent as the signer's page would (tests/support/signing_stack.py: the
acceptance is the requester's side): the second signer's invitation arrives only after
the first signed; the receiver gets every event with a valid HMAC-SHA256 signature
(portal/API.md "Webhooks"); `qsign portal audit verify` passes, then names the entry an
SQL UPDATE changed.

Then workspaces apart: a viewer, who joined with the organisation's OpenID Connect
provider (IdentityPython's OP on loopback, tests/support/oidc_provider.py) from the
invitation page, cannot create or cancel by page or API; a requester of workspace A,
with her browser session and with the API token she made in /settings, tries every
requester route of the portal's route table (app.router, so a route added later is tried
too) with workspace B's identifiers and gets NOT_FOUND, or FORBIDDEN where portal/API.md
says so, never B's data; A's pages opened at B's identifiers show nothing of B."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any

from playwright.async_api import FilePayload, Page, async_playwright

from portal.accounts import Role
from portal.routes.oidc_signin import CALLBACK
from portal.webhooks import SIGNATURE_HEADER, verify
from tests.support.accounts import accounts, new_transaction, requester_in
from tests.support.chromium import launch_chromium
from tests.support.cli import run_qsign
from tests.support.oidc_provider import oidc_provider
from tests.support.pcsc import RunningCard
from tests.support.pdfs import blank_pdf
from tests.support.portal_e2e import check_page, ready, until
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.ports import free_port
from tests.support.requester_pages import join, join_with_provider, new_api_token, session_call
from tests.support.signing_stack import OnStack, Stack, with_stack
from tests.support.smtp_sink import SmtpSink, smtp_sink
from tests.support.waiting import wait_until_async
from tests.support.webhook_receiver import EVENTS, Receiver, receiving
from tests.support.workspace_members import call_as

RITA, REMI = "rita@example.test", "remi@example.test"  # the two requesters
ALICE, BOB = "alice@example.test", "bob@example.test"  # the signers (the card's names)


def _pdf(name: str) -> FilePayload:
    return {"name": name, "mimeType": "application/pdf", "buffer": blank_pdf(1)}


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
    await page.set_input_files("#documents", files=[_pdf("lease.pdf")])
    await page.click("#add-signer")
    rows = page.locator("#signers .signer-row")
    for index, (role, email) in enumerate((("Tenant", "model-t@example.test"),
                                           ("Landlord", "model-l@example.test"))):
        await rows.nth(index).locator("[data-field=name]").fill(role)
        await rows.nth(index).locator("[data-field=email]").fill(email)
    assert await page.input_value("#order") == "sequential"
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
    """Rémi fills the template's two roles in /templates and sends: a malformed address
    first, which the page's error names by its field, then the right one."""
    await page.goto(f"{portal.url}/templates?lang=en")
    await ready(page)
    await page.locator("#template-list li button").click()
    await page.fill("#use-title", "Lease, 3 rue Monge")
    for index, (name, email, phone) in enumerate((
            ("Alice Martin", ALICE, "+33612345670"), ("Bob Durand", BOB, "+33612345671"))):
        await page.fill(f"#role-{index}-name", name)
        await page.fill(f"#role-{index}-email", email)
        await page.fill(f"#role-{index}-phone", phone)
    await page.fill("#role-1-email", "bob-at-example.test")  # refused by the portal
    await page.click("#use-submit")
    await until(page, "document.querySelector('#use-status').dataset.kind === 'error'")
    assert "signers[1].email" in await page.inner_text("#use-status")  # the field named
    await page.fill("#role-1-email", BOB)
    await page.click("#use-submit")
    await until(page, "document.querySelector('#use-status').dataset.kind === 'ok'")


async def _add_webhook(page: Page, portal: RunningPortal, ws: str, url: str) -> str:
    """The administrator adds a webhook for every event (the page's default) in
    /advanced with the bootstrap token; its secret as the page shows it once."""
    await page.goto(f"{portal.url}/advanced?ws={ws}&lang=en")
    await ready(page)
    await page.fill("#token", portal.token)
    await page.click("#token-form button[type=submit]")
    await page.locator("#advanced").wait_for()
    await page.fill("#hook-url", url)
    await page.click("#hook-submit")
    await page.locator("#hook-secret:not([hidden])").wait_for()
    [hook] = (await _admin(portal, "GET", f"/api/v1/workspaces/{ws}/webhooks"))["webhooks"]
    assert sorted(hook["events"]) == sorted(EVENTS)
    return await page.input_value("#secret")


def _mailed(sink: SmtpSink, address: str) -> bool:
    return bool(sink.to(address))


def _about(sink: SmtpSink, address: str, tx_id: str) -> list[str]:
    """The bodies of the mails to `address` that link /requester?tx=`tx_id`."""
    bodies = [m.get_payload(decode=True) for m in sink.to(address)]
    return [b.decode() for b in bodies
            if isinstance(b, bytes) and f"/requester?tx={tx_id}" in b.decode()]


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
        for email in (RITA, REMI):
            await _admin(portal, "POST", f"/api/v1/workspaces/{ws}/invitations",
                         {"email": email, "role": "requester"}, expect=201)
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                admin = await (await browser.new_context()).new_page()
                secret = await _add_webhook(admin, portal, ws, url)
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
        assert not _mailed(sink, BOB) and not portal.store.mails(to=BOB)
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
        # The completion mail goes to the requester who started it, linking the transaction.
        await wait_until_async(lambda: _about(sink, REMI, tx["id"]), "Rémi's completion mail")
        assert not _about(sink, RITA, tx["id"])

        expected = [("viewed", 1), ("accepted", 1), ("signed", 1), ("viewed", 2),
                    ("accepted", 2), ("signed", 2), ("completed", None)]

        def of_tx() -> list[dict[str, Any]]:
            return [e for e in receiver.events(secret)
                    if e["data"]["transaction"]["id"] == tx["id"]]

        await wait_until_async(lambda: len(of_tx()) >= len(expected), "every event")
        for headers, raw in receiver.received:  # every request the receiver got
            assert verify(secret, headers[SIGNATURE_HEADER], raw, now=time.time())
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


# Workspaces apart ----------------------------------------------------------------------

# Routes whose credential is a link or none (signer, Personal Space, identity capture,
# sign-in and invitation links, the agent's SMS routes, public validation and pages'
# static files): not a requester's routes.
NOT_REQUESTER = ("/api/s/", "/api/me", "/api/identity/", "/api/auth/", "/api/v1/sms-otp/",
                 "/api/v1/validations", "/api/v1/start", "/api/v1/openapi.json", "/static/",
                 "/legal/", "/s/", "/me/", "/id/", "/join/", "/reset/", "/health",
                 "/favicon.ico")
ANN, VIC = "ann@example.test", "vic@example.test"  # A's requester and viewer
VIC_AT_PROVIDER = {"sub": "vic-at-idp", "email": VIC, "email_verified": True,
                   "name": "Vic Moreau"}
PLACEHOLDER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
B_SECRETS = ("Bravo lease", "Bravo template", "b-signer@example.test", "Bob's workspace",
             "bob@example.test")


def _requester_routes(portal: RunningPortal) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app but those of NOT_REQUESTER."""
    found = []
    for route in portal.server.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(NOT_REQUESTER):
            continue
        methods = ["GET", "POST"] if route.method == "*" else [route.method]
        found += [(m, path) for m in methods if m != "HEAD"]
    return found


def _expected(template: str, by_token: bool) -> set[tuple[int, str]]:
    """What A gets at a route naming B's identifiers (portal/API.md): the console is the
    service administrator's, personal settings a browser session's (FORBIDDEN); anything
    of another workspace is NOT_FOUND, as what does not exist."""
    if template.startswith("/api/v1/console/") or (
            by_token and template.startswith("/api/account")):
        return {(403, "FORBIDDEN")}
    return {(404, "NOT_FOUND")}


async def _b_workspace(portal: RunningPortal) -> dict[str, str]:
    """Workspace B with a transaction, a template, a bulk send and a webhook, made by its
    owner's API token: their identifiers by the routes' placeholder names."""
    b = requester_in(portal, "bob@example.test", Role.OWNER)
    ws = f"/api/v1/workspaces/{b.workspace}"
    body = {**new_transaction("Bravo lease"),
            "signers": [{"name": "Bea Roux", "email": "b-signer@example.test"}]}
    tx = await call_as(portal, b.token, "POST", ws + "/transactions", 201, body)
    template = await call_as(portal, b.token, "POST", ws + "/templates", 201,
                             {"name": "Bravo template", "fromTransaction": tx["id"]})
    bulk = await call_as(portal, b.token, "POST", f"{ws}/templates/{template['id']}/bulk",
                         202, {"csv": "Bea Roux.email\nb-signer@example.test\n"})
    hook = await call_as(portal, b.token, "POST", ws + "/webhooks", 201,
                         {"url": "http://127.0.0.1:9/hook", "events": ["signed"]})
    [b_token] = accounts(portal).tokens_of(b.user.id)
    return {"ws": b.workspace, "id": tx["id"], "doc": tx["documents"][0]["id"],
            "signer": tx["signers"][0]["id"], "user": b.user.id, "tpl": template["id"],
            "bulk": bulk["id"], "hook": hook["id"], "token": b_token.id}


def _identifier(ids: dict[str, str], placeholder: re.Match[str]) -> str:
    return ids.get(placeholder.group(1), "x")


async def _sweep(portal: RunningPortal, ann: Page, token: str, b: dict[str, str]) -> int:
    """Every requester route with B's identifiers, with Ann's session and her token;
    the number of calls made."""
    calls = 0
    for method, template in _requester_routes(portal):
        ids = {**b, "id": b["ws"] if "/console/workspaces/" in template else
               b["user"] if "/console/users/" in template else b["id"]}
        path = PLACEHOLDER.sub(partial(_identifier, ids), template)
        if path == template and method != "GET":
            continue  # no identifier to try: it acts in A's own workspace or account
        body = {"text": "hello"}
        by_session = await session_call(ann, portal, method, path, body)
        answers = [(False, by_session.status, await by_session.text())]
        async with portal.session.request(method, portal.url + path, json=body, headers={
                "Authorization": f"Bearer {token}"}) as response:
            answers.append((True, response.status, await response.text()))
        for by_token, status, text in answers:
            calls += 1
            where = (method, path, "token" if by_token else "session", status, text[:200])
            assert not [s for s in B_SECRETS if s in text], where
            if path != template and template.startswith("/api/"):
                answer = json.loads(text)
                assert (status, answer.get("error")) in _expected(template, by_token), where
    return calls


async def _pages_show_nothing_of_b(ann: Page, portal: RunningPortal,
                                   b: dict[str, str]) -> None:
    for path in (f"/requester?tx={b['id']}&ws={b['ws']}", f"/templates?ws={b['ws']}",
                 f"/workspace?ws={b['ws']}", f"/workspace/{b['ws']}/identity-documents",
                 f"/workspace/{b['ws']}/start"):
        await ann.goto(f"{portal.url}{path}{'&' if '?' in path else '?'}lang=en")
        await ready(ann)
        shown = await ann.evaluate("() => document.body.innerText")
        assert not [s for s in B_SECRETS if s in shown], (path, shown)


async def _viewer_cannot_write(vic: Page, portal: RunningPortal, ws: str,
                               tx: dict[str, Any]) -> None:
    """Vic, a viewer of A: the API refuses her creating, starting from a template,
    cancelling or saving a template (FORBIDDEN); /requester and /templates show her no
    writing control; the transaction and the templates are left as they were."""
    model = await _admin(portal, "POST", f"/api/v1/workspaces/{ws}/templates",
                         {"name": "Alpha model", "fromTransaction": tx["id"]}, expect=201)
    for method, path, body in (
            ("POST", f"/api/v1/workspaces/{ws}/transactions", new_transaction("Mine")),
            ("POST", f"/api/v1/workspaces/{ws}/templates/{model['id']}/transactions",
             {"signers": [{"role": "Aude Roy", "email": "x@example.test"}]}),
            ("POST", f"/api/v1/workspaces/{ws}/transactions/{tx['id']}/cancel", {}),
            ("POST", f"/api/v1/workspaces/{ws}/templates",
             {"name": "Mine", "fromTransaction": tx["id"]})):
        refused = await session_call(vic, portal, method, path, body)
        assert (refused.status, (await refused.json())["error"]) == (403, "FORBIDDEN")

    await vic.goto(f"{portal.url}/requester?lang=en")
    await ready(vic)
    await vic.locator(f"li[data-transaction='{tx['id']}'] button").click()
    await vic.locator("#detail:not([hidden])").wait_for()
    assert await vic.is_hidden("#create")  # no new-transaction form for a viewer
    assert await vic.locator("#tx-cancel, [data-resend], [data-replace]").count() == 0
    assert await vic.is_hidden("#reply-form")
    await vic.goto(f"{portal.url}/templates?lang=en")  # the list, nothing to save or start
    await ready(vic)
    await vic.locator("li[data-template]").wait_for()
    assert await vic.locator("#template-list button").count() == 0
    assert await vic.is_hidden("#save-form")
    listed = await portal.call("GET", f"/api/v1/workspaces/{ws}/transactions", auth=True)
    assert [(t["id"], t["status"]) for t in listed["transactions"]] == [(tx["id"], "open")]
    templates = await portal.call("GET", f"/api/v1/workspaces/{ws}/templates", auth=True)
    assert [t["id"] for t in templates["templates"]] == [model["id"]]


def test_a_viewer_cannot_write_and_workspace_a_sees_nothing_of_b(tmp_path: Path) -> None:
    async def main() -> None:
        with smtp_sink() as sink:
            port = free_port()  # the callback registered at the provider names it
            async with oidc_provider(tmp_path / "op", f"http://127.0.0.1:{port}{CALLBACK}",
                                     VIC_AT_PROVIDER) as provider, running_portal(
                    tmp_path, port=port, smtp_host="127.0.0.1", smtp_port=sink.port,
                    webhook_url_prefixes=["http://127.0.0.1:9/"],
                    oidc_issuer=provider.issuer, oidc_client_id=provider.client_id,
                    oidc_client_secret=provider.client_secret, oidc_name="Example IdP",
            ) as portal, async_playwright() as playwright:
                ws = (await _admin(portal, "POST", "/api/v1/workspaces", {"name": "Alpha"},
                                   expect=201))["id"]
                for email, role in ((ANN, "requester"), (VIC, "viewer")):
                    await _admin(portal, "POST", f"/api/v1/workspaces/{ws}/invitations",
                                 {"email": email, "role": role}, expect=201)
                tx = await _admin(portal, "POST", f"/api/v1/workspaces/{ws}/transactions", {
                    **new_transaction("Alpha lease"),
                    "signers": [{"name": "Aude Roy", "email": "a-signer@example.test"}]},
                    expect=201)
                b = await _b_workspace(portal)
                browser = await launch_chromium(playwright)
                try:
                    ann = await (await browser.new_context()).new_page()
                    vic = await (await browser.new_context()).new_page()
                    await join(ann, portal, sink, ANN, "Ann Perrin")
                    await join_with_provider(vic, portal, sink, VIC)
                    view = await (await session_call(vic, portal, "GET",
                                                     "/api/auth/session")).json()
                    assert (view["user"]["name"], view["workspaces"][0]["role"]) == (
                        "Vic Moreau", "viewer")  # as the provider named her
                    await _viewer_cannot_write(vic, portal, ws, tx)
                    token = await new_api_token(ann, portal, "CI")
                    assert await _sweep(portal, ann, token, b) >= 80
                    await _pages_show_nothing_of_b(ann, portal, b)
                finally:
                    await browser.close()

    asyncio.run(main())
