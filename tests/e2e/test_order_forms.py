"""The signing order and reminders in the requester's forms, in Chromium (issue 15), on
a portal served on loopback: the requester page's new-transaction form sends three
signers by groups (two in group 1, one in group 2) with reminders every 3 days, and
/templates makes a template from an uploaded document, two named roles in groups, B-LTA,
reminders and a message (not from a transaction); a role left unnamed is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import FilePayload, async_playwright

from portal.store.parameters import SigningOrder
from tests.support.chromium import launch_chromium
from tests.support.pdfs import blank_pdf
from tests.support.portal_e2e import check_page, ready, until
from tests.support.portal_service import running_portal

OK = "document.querySelector('{}').dataset.kind === 'ok'"


def _pdf(name: str) -> FilePayload:
    return {"name": name, "mimeType": "application/pdf", "buffer": blank_pdf(1)}


def test_order_by_groups_and_reminders_in_the_forms(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            page = await (await browser.new_context()).new_page()
            try:
                await page.goto(f"{portal.url}/requester?lang=en")
                await ready(page)
                await page.fill("#token", portal.token)
                await page.click("#token-form button[type=submit]")
                await page.locator("#create:not([hidden])").wait_for()
                await page.fill("#title", "Groups")
                await page.fill("#req-name", "Rita")
                await page.fill("#req-email", "rita@example.test")
                await page.set_input_files("#documents", files=[_pdf("a.pdf")])
                await page.click("#add-signer")
                await page.click("#add-signer")
                assert await page.locator("[data-field=group]").first.is_hidden()
                await page.select_option("#order", "groups")
                rows = page.locator("#signers .signer-row")
                for index, group in enumerate(("1", "1", "2")):
                    await rows.nth(index).locator("[data-field=email]").fill(
                        f"g{index}@example.test")
                    await rows.nth(index).locator("[data-field=group]").fill(group)
                await page.fill("#reminders", "3")
                await page.select_option("#level", "B-B")
                await check_page(page)
                await page.click("#create-submit")
                await until(page, OK.format("#create-status"))
                [tx] = portal.store.transactions()
                kept = portal.store.parameters(tx.id)
                assert (kept.signing_order, kept.reminder_days) == (SigningOrder.GROUPS, 3)
                assert [s.status.value for s in tx.signers] == ["invited", "invited",
                                                                "waiting"]

                await page.goto(f"{portal.url}/templates?lang=fr")
                await ready(page)
                await page.locator("#templates-page:not([hidden])").wait_for()
                await page.fill("#new-name", "Bail")
                await page.fill("#new-title", "Bail d'habitation")
                await page.set_input_files("#new-documents", files=[_pdf("bail.pdf")])
                await page.click("#new-add-role")
                await page.select_option("#new-order", "groups")
                roles = page.locator("#new-roles [data-role-row]")
                await roles.nth(0).locator("[data-field=role]").fill("Locataire")
                await page.click("#new-submit")  # the second role has no name yet
                await until(page, "document.querySelector('#notice').dataset.kind "
                                  "=== 'error'")
                assert portal.store.templates("default") == []
                await roles.nth(1).locator("[data-field=role]").fill("Bailleur")
                await roles.nth(1).locator("[data-field=group]").fill("2")
                await page.select_option("#new-level", "B-LTA")
                await page.fill("#new-reminders", "5")
                await page.fill("#new-message", "Merci de signer.")
                await check_page(page)
                await page.click("#new-submit")
                await until(page, OK.format("#notice"))
                await page.locator("#template-list li", has_text="Bail").wait_for()
                [tpl] = portal.store.templates("default")
                assert tpl.body["title"] == "Bail d'habitation"
                assert tpl.body["roles"] == [{"role": "Locataire", "group": 1},
                                             {"role": "Bailleur", "group": 2}]
                assert tpl.body["parameters"] == {
                    "signingOrder": "groups", "reminderDays": 5, "level": "B-LTA",
                    "message": "Merci de signer."} | {
                    k: v for k, v in tpl.body["parameters"].items()
                    if k not in ("signingOrder", "reminderDays", "level", "message")}
                assert len(tpl.body["documents"]) == 1
            finally:
                await browser.close()
    asyncio.run(main())
