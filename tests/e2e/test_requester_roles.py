"""/requester and /templates offer only what the caller's role may do, in Chromium, on
the portal served on loopback: a workspace's viewer, come with her browser session or
with her API token typed in the page, sees the transactions and templates but no writing
control (no new-transaction form, cancel, resend, replace or reply; no template saved,
made or started: the API refuses them, portal/API.md "Workspaces and roles"); a
requester (by token) and an owner (by session) see them all. The pages learn the role
from the API (the transaction list's `role`, the workspace's), and a typed API token's
workspace from the API when the address names none. The transaction, by
groups, is said so in its detail with each signer's group.

Sessions are opened in the store (the sign-in pages have their own tests:
test_portal_accounts.py, test_requester_side.py) and handed to Chromium as its cookie."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

from portal.accounts import Role
from portal.routes.access import PLAIN_COOKIE, SESSION_LIFETIME, digest
from tests.support.accounts import Requester, accounts, new_transaction, requester_in
from tests.support.chromium import launch_chromium
from tests.support.portal_e2e import check_page, ready
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.workspace_members import call_as

WRITING = {"new transaction": "#create:not([hidden])", "cancel": "#tx-cancel",
           "resend": "[data-resend]", "replace": "[data-replace]",
           "reply": "#reply-form:not([hidden])"}
TEMPLATE_WRITING = {"use": "#template-list button", "save": "#save-form:visible",
                    "new template": "#new-card:visible"}


async def _requester_page(browser: Browser, portal: RunningPortal, who: Requester,
                          by_session: bool, listed: bool = True) -> Page:
    """/requester in a fresh browser context, as `who`: signed in (a session cookie), or
    with their API token typed in the page's token form; `listed`: once it shows the
    transactions."""
    context = await browser.new_context()
    if by_session:
        secret = secrets.token_urlsafe(32)
        accounts(portal).open_session(digest(secret), who.user.id, stage="done",
                                      csrf=secrets.token_urlsafe(16), via="password",
                                      lifetime=SESSION_LIFETIME)
        await context.add_cookies([{"name": PLAIN_COOKIE, "value": secret,
                                    "url": portal.url}])
    page = await context.new_page()
    await page.goto(f"{portal.url}/requester?lang=en")
    await ready(page)
    if not by_session:
        await page.fill("#token", who.token)
        await page.click("#token-submit")
    if listed:
        await page.locator("#list:not([hidden])").wait_for()
    return page


async def _open(page: Page, tx: dict[str, Any]) -> None:
    await page.locator(f"li[data-transaction='{tx['id']}'] button").click()
    await page.locator("#detail:not([hidden])").wait_for()
    await page.locator(f"#detail-signers li[data-signer='{tx['signers'][1]['id']}']").wait_for()


async def _shown(page: Page, controls: dict[str, str]) -> dict[str, int]:
    return {name: await page.locator(selector).count() for name, selector in controls.items()}


async def _templates_shown(page: Page, workspace: str | None) -> dict[str, int]:
    """/templates of `workspace` in the same tab (a typed token is kept in the tab);
    None: the page as a link without ?ws= opens it, in the token's own workspace."""
    asked = f"ws={workspace}&" if workspace else ""
    await page.goto(f"{page.url.split('/requester')[0]}/templates?{asked}lang=en")
    await ready(page)
    await page.locator("li[data-template]").wait_for()
    return await _shown(page, TEMPLATE_WRITING)


def test_the_requester_page_offers_only_what_the_role_may_do(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, async_playwright() as playwright:
            owner = requester_in(portal, "olga@example.test", Role.OWNER)
            writer = requester_in(portal, "remi@example.test", Role.REQUESTER,
                                  owner.workspace)
            viewer = requester_in(portal, "vic@example.test", Role.VIEWER, owner.workspace)
            tx = await call_as(portal, writer.token, "POST", "/api/v1/transactions", 201, {
                **new_transaction("Lease"), "signingOrder": "groups", "signers": [
                    {"name": "Alice Martin", "email": "s1@example.test", "group": 1},
                    {"name": "Bob Durand", "email": "s2@example.test", "group": 2}]})
            await call_as(portal, writer.token, "POST",
                          f"/api/v1/workspaces/{owner.workspace}/templates", 201,
                          {"name": "Lease model", "fromTransaction": tx["id"]})
            browser = await launch_chromium(playwright)
            try:
                for who, by_session in ((viewer, True), (viewer, False)):
                    page = await _requester_page(browser, portal, who, by_session)
                    await _open(page, tx)
                    assert await _shown(page, WRITING) == dict.fromkeys(WRITING, 0), by_session
                    assert await _templates_shown(page, owner.workspace) == dict.fromkeys(
                        TEMPLATE_WRITING, 0), by_session
                    await page.context.close()
                # invited Alice: resend and replace; waiting Bob: replace only
                everything = {"new transaction": 1, "cancel": 1, "resend": 1, "replace": 2,
                              "reply": 1}
                for who, by_session in ((writer, False), (owner, True)):
                    page = await _requester_page(browser, portal, who, by_session)
                    await _open(page, tx)
                    assert await _shown(page, WRITING) == everything, by_session
                    facts = await page.inner_text("#detail-facts")
                    assert "By groups, one group after the other" in facts
                    bob = await page.inner_text(
                        f"#detail-signers li[data-signer='{tx['signers'][1]['id']}']")
                    assert "group 2" in bob
                    await check_page(page)
                    # The requester's token, bound to the owner's workspace, is not the
                    # bootstrap token: without ?ws= the page must not open "default".
                    asked = owner.workspace if by_session else None
                    assert await _templates_shown(page, asked) == dict.fromkeys(
                        TEMPLATE_WRITING, 1), by_session
                    await page.context.close()
                # Signed in with no workspace of her own, /templates fails to open for
                # the session; the requester's token typed then opens the token's own
                # workspace, not the session's.
                nobody = accounts(portal).create_user(email="nina@example.test",
                                                      name="Nina", lang="en")
                page = await _requester_page(browser, portal, Requester(
                    nobody, "", ""), by_session=True, listed=False)
                await page.goto(f"{portal.url}/templates?lang=en")
                await ready(page)
                await page.locator("#token-card:not([hidden])").wait_for()
                await page.fill("#token", writer.token)
                await page.click("#token-form button[type=submit]")
                await page.locator("li[data-template]").wait_for()
                assert "Lease model" in await page.inner_text("#template-list")
                assert await _shown(page, TEMPLATE_WRITING) == dict.fromkeys(
                    TEMPLATE_WRITING, 1)
                await page.context.close()
            finally:
                await browser.close()

    asyncio.run(main())
