"""The master console and a workspace's accepted identity documents in Chromium (issue
15), on a portal served on loopback: the administrator opens /console with the bootstrap
token, sees the workspaces and the audit chain verified, creates a workspace and invites
its owner (mailed, both in the audit log), suspends a workspace (the page says so, and its
member's token is then refused); an admin of the workspace narrows its
accepted documents to French passports on its page, which the signer of a transaction
made in the workspace with the getting-started sample is then shown; the getting-started
page sends a first transaction to the requester."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from playwright.async_api import async_playwright

from portal.accounts import Role
from tests.support.chromium import launch_chromium
from tests.support.portal_e2e import check_page, ready, until
from tests.support.portal_service import running_portal
from tests.support.workspace_members import call_as, member_token


def test_the_console_and_the_accepted_documents_page(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, async_playwright() as playwright:
            workspace, token = await member_token(portal, Role.ADMIN)
            browser = await launch_chromium(playwright)
            page = await (await browser.new_context()).new_page()
            try:
                await page.goto(f"{portal.url}/console?lang=fr")
                await ready(page)
                await page.fill("#token", portal.token)
                await page.click("#token-form button[type=submit]")
                item = page.locator(f"li[data-workspace='{workspace}']")
                await item.wait_for()
                await until(page, "document.querySelector('#audit-status').dataset.ok "
                                  "=== 'true'")
                await check_page(page)
                # a new workspace and its owner's invitation, from the console's forms
                await page.fill("#ws-name", "Atelier")
                await page.click("#ws-create button[type=submit]")
                await page.locator("#workspaces li", has_text="Atelier").wait_for()
                assert await page.locator("#invite-ws option:checked").inner_text() == \
                    "Atelier"
                await page.fill("#invite-email", "owner@atelier.test")
                await page.click("#invite-form button[type=submit]")
                await until(page, "document.querySelector('#notice').dataset.kind "
                                  "=== 'ok' && !document.querySelector('#invite-email')"
                                  ".value")
                mail, = portal.store.mails(to="owner@atelier.test")
                assert "Atelier" in mail.subject and "/join/" in mail.body
                for action in ("workspace.create", "workspace.invite"):
                    await page.locator("#audit td", has_text=action).wait_for()
                await item.locator("button").click()
                await item.locator(".badge").wait_for()
                assert "suspendu" in await item.inner_text()
                await call_as(portal, token, "GET",
                              f"/api/v1/workspaces/{workspace}/identity-documents", 403)
                await page.locator("#audit tbody tr[data-seq='1']").wait_for()
                await item.locator("button").click()  # lifted again for the page below
                await item.locator(".badge").wait_for(state="detached")

                page = await (await browser.new_context()).new_page()
                await page.goto(f"{portal.url}/workspace/{workspace}/identity-documents"
                                "?lang=en")
                await ready(page)
                await page.fill("#token", token)
                await page.click("#token-form button[type=submit]")
                await page.locator("#choice").wait_for()
                await check_page(page)
                await page.uncheck("#documents-all")
                for box in await page.locator("#documents input[type=checkbox]").all():
                    await box.uncheck()
                await page.check("tr[data-state='FRA'] input[data-kind='passport']")
                await page.click("#documents-save")
                await until(page, "document.querySelector('#notice').dataset.kind "
                                  "=== 'ok'")

                sample = await portal.call("GET", "/api/v1/start/sample.pdf")  # as /start
                tx = await call_as(portal, token, "POST",
                                   f"/api/v1/workspaces/{workspace}/transactions", 201, {
                                       "title": "First", "level": "B-B",
                                       "requester": {"name": "Ada",
                                                     "email": "ada@example.test"},
                                       "documents": [{"name": "first.pdf", "content":
                                                      base64.b64encode(sample).decode()}],
                                       "signers": [{"name": "Alice Martin", "lang": "en",
                                                    "email": "ada@example.test",
                                                    "phone": "+33612345678"}]})
                page = await (await browser.new_context()).new_page()
                await page.goto(f"{portal.url}/s/{portal.invite_path(tx, 0)}?lang=fr")
                shown = page.locator("#accepted-documents")  # drawn before any capture
                await shown.locator("li[data-state='FRA']").wait_for(state="attached")
                assert await shown.locator("li").count() == 1
                assert "Passeport" in await shown.text_content()
                assert await page.locator("#doc-id-card").is_disabled()
                assert await page.locator("#doc-passport").is_checked()

                page = await (await browser.new_context()).new_page()  # getting started
                await page.goto(f"{portal.url}/workspace/{workspace}/start?lang=en")
                await ready(page)
                await page.locator("#agent-status").wait_for()  # no agent in this test
                assert await page.get_attribute("#step-agent", "data-done") == "false"
                await page.fill("#token", token)
                await page.fill("#my-email", "ada@example.test")
                await page.click("#create-submit")
                await page.locator("#invite-link").wait_for()
                assert "/s/" in (await page.get_attribute("#invite-link", "href") or "")
                await check_page(page)
            finally:
                await browser.close()
    asyncio.run(main())
