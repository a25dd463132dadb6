"""The /templates page in Chromium (issue 15), on a portal served on loopback: a
requester saves a transaction in groups as a template, edits it (title, level,
reminders; the stale revision is the page's own), starts a transaction from it with
its roles filled, sends a CSV whose bad line the page names by line and column, then a
good one whose progress reaches every line sent. On the requester page, the same
requester resends an invitation, replaces a signer and cancels the transaction. On the
advanced page, a webhook to the portal's own address is refused, one to a receiver on
loopback is added (its secret shown once, which the receiver's events verify with), its
delivery log shows the receiver's answer, and the sender name is saved. The signer's page
offers only the languages the requester chose."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import FilePayload, async_playwright

from tests.support.chromium import launch_chromium
from tests.support.portal_e2e import check_page, ready, until
from tests.support.portal_service import running_portal
from tests.support.waiting import wait_until_async
from tests.support.webhook_receiver import Receiver, receiving

HEADER = "Tenant.email,Tenant.name,Landlord.email\n"


def _csv(second_line: str) -> FilePayload:
    """A two-line CSV file as the file input gets it."""
    return {"name": "signers.csv", "mimeType": "text/csv",
            "buffer": (HEADER + "a@example.test,Ann,b@example.test\n" + second_line).encode()}


def test_templates_page_saves_starts_and_sends_in_bulk(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, async_playwright() as playwright:
            tx = await portal.create(signers=[
                {"name": "Tenant", "email": "t@example.test", "group": 1},
                {"name": "Landlord", "email": "l@example.test", "group": 2}],
                documents=1, signingOrder="groups")
            browser = await launch_chromium(playwright)
            page = await (await browser.new_context()).new_page()
            try:
                await page.goto(f"{portal.url}/templates?lang=fr")
                await ready(page)
                await page.fill("#token", portal.token)
                await page.click("#token-form button[type=submit]")
                await page.locator("#templates-page").wait_for()
                await page.fill("#save-name", "Bail")
                await page.fill("#save-tx", tx["id"])
                await page.click("#save-submit")
                item = page.locator("#template-list li")
                await item.wait_for()
                assert "Tenant, Landlord" in await item.inner_text()
                assert "par groupes" in await item.inner_text()
                await check_page(page)

                await item.locator("button").click()
                await page.fill("#edit-title", "Bail 2027")
                await page.select_option("#edit-level", "B-LTA")
                await page.fill("#edit-reminders", "3")
                await page.click("#edit-submit")
                # The button comes back once the editor shows the saved revision: a
                # choice made before that would be overwritten by the re-render.
                await until(page, "document.querySelector('#edit-submit').disabled === false")
                assert await page.get_attribute("#notice", "data-kind") == "ok"
                [kept] = portal.store.templates("default")
                assert (kept.revision, kept.body["title"]) == (2, "Bail 2027")
                assert kept.body["parameters"]["level"] == "B-LTA"
                assert kept.body["parameters"]["reminderDays"] == 3
                await page.select_option("#edit-level", "B-B")  # B-LTA needs a TSA here
                await page.click("#edit-submit")
                await wait_until_async(
                    lambda: portal.store.templates("default")[0].revision == 3, "revision 3")
                await until(page, "document.querySelector('#edit-submit').disabled === false")
                await page.fill("#req-name", "Agence Dupont")  # the bootstrap token has none
                await page.fill("#req-email", "agence@example.test")
                await page.fill("#role-0-email", "anne@example.test")
                await page.fill("#role-1-email", "louis@example.test")
                await page.click("#use-submit")
                await until(page, "!document.querySelector('#use-status').hidden")
                assert await page.get_attribute("#use-status", "data-kind") == "ok", \
                    await page.inner_text("#use-status")
                started = [t for t in portal.store.transactions() if t.id != tx["id"]]
                assert [s.email for s in started[0].signers] == [
                    "anne@example.test", "louis@example.test"]

                await page.set_input_files("#csv-file", files=_csv(
                    "c@example.test,Cid,not-an-address\n"))
                await page.click("#bulk-submit")
                problem = page.locator("#csv-errors li[data-line='3']"
                                       "[data-column='Landlord.email']")
                await problem.wait_for()
                assert "Ligne 3, colonne Landlord.email" in await problem.inner_text()
                await page.set_input_files("#csv-file", files=_csv(
                    "c@example.test,Cid,d@example.test\n"))
                await page.click("#bulk-submit")
                await until(page, "document.querySelector('#progress-bar').value === 2")
                assert await page.locator("#rows tr").count() == 2
                assert "2 envoyées" in await page.inner_text("#progress-text")
                await check_page(page)
            finally:
                await browser.close()

    asyncio.run(main())


def test_the_requester_page_cancels_resends_and_replaces(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, async_playwright() as playwright:
            tx = await portal.create(signers=2, documents=1, signingOrder="parallel")
            browser = await launch_chromium(playwright)
            page = await (await browser.new_context()).new_page()
            try:
                await page.goto(f"{portal.url}/requester?lang=en")
                await ready(page)
                await page.fill("#token", portal.token)
                await page.click("#token-submit")
                await page.click("#transactions button")
                await page.wait_for_selector("#detail:not([hidden])")
                first, second = (s["id"] for s in tx["signers"])
                await page.click(f"button[data-resend='{first}']")
                await until(page, "document.querySelector('#detail-error').dataset.kind "
                                  "=== 'ok'")
                assert len(portal.store.mails(to="s1@example.test")) == 2
                replace = page.locator(f"form[data-replace='{second}']")
                await replace.locator("input").fill("claire@example.test")
                await replace.locator("button").click()
                shown = page.locator(f"li[data-signer='{second}'] strong", has_text="claire")
                await shown.wait_for()
                assert portal.store.mails(to="claire@example.test")
                await check_page(page)
                await page.click("#tx-cancel")
                await page.locator("#tx-cancel").wait_for(state="detached")
                assert portal.store.transaction(tx["id"]).status.value == "cancelled"
            finally:
                await browser.close()

    asyncio.run(main())


def test_the_advanced_page_adds_a_webhook_and_shows_its_deliveries(tmp_path: Path) -> None:
    receiver = Receiver(failures=0)

    async def main() -> None:
        async with receiving(receiver) as url, running_portal(
                tmp_path, webhook_url_prefixes=[url]) as portal, \
                async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            page = await (await browser.new_context()).new_page()
            try:
                await page.goto(f"{portal.url}/advanced?lang=fr")
                await ready(page)
                await page.fill("#token", portal.token)
                await page.click("#token-form button[type=submit]")
                await page.locator("#advanced").wait_for()
                await page.fill("#hook-url", f"{portal.url}/api/v1/console/workspaces")
                await page.click("#hook-submit")
                await until(page, "document.querySelector('#notice').dataset.kind "
                                  "=== 'error'")  # the portal's own address: refused
                await page.fill("#hook-url", url)
                await page.click("#hook-submit")
                await page.locator("#hook-secret:not([hidden])").wait_for()
                secret = await page.input_value("#secret")
                assert secret.startswith("whsec_")
                await check_page(page)
                tx = await portal.create(signers=1, documents=1)
                await portal.call("GET", f"/api/s/{portal.invite_path(tx, 0)}")
                await wait_until_async(lambda: receiver.received, "the viewed event")
                assert receiver.events(secret)[0]["event"] == "viewed"
                await page.click("#hooks button[data-log]")
                row = page.locator("#delivery-rows tr")
                await row.wait_for()
                assert "200" in await row.inner_text()
                await page.fill("#sender-name", "Agence Dupont")
                await page.click("#mail-submit")
                await until(page, "document.querySelector('#notice').dataset.kind === 'ok'")
                settings = await portal.call("GET", "/api/v1/workspaces/default/mail",
                                             auth=True)
                assert settings["senderName"] == "Agence Dupont"
            finally:
                await browser.close()

    asyncio.run(main())


def test_the_signer_page_offers_only_the_requesters_languages(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, async_playwright() as playwright:
            tx = await portal.create(signers=1, documents=1, languages=["fr"])
            browser = await launch_chromium(playwright)
            page = await (await browser.new_context()).new_page()
            try:
                await page.goto(f"{portal.url}/s/{portal.invite_path(tx, 0)}?lang=en")
                await until(page, "document.documentElement.lang === 'fr'")
                assert await page.locator("#lang-switch option[value='en']").is_disabled()
            finally:
                await browser.close()

    asyncio.run(main())
