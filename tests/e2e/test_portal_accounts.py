"""A requester's account in Chromium (issue 15 acceptance), on a portal served on
loopback with a real SMTP sink: the administrator's invitation mail opens /join, where
the new owner picks a name and password and enrols TOTP from the key the page shows; the
workspace page lists them as owner and invites a requester (mailed); /settings signs
out; /signin takes the password then a TOTP code, in French; the requester page then
shows the workspace's transaction and sends a message with the session's CSRF token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyotp
from playwright.async_api import Page, async_playwright

from tests.support.accounts import new_transaction
from tests.support.chromium import launch_chromium
from tests.support.portal_e2e import check_page, ready
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.smtp_sink import smtp_sink
from tests.support.waiting import wait_until_async as until_async

PASSWORD = "correct horse battery"


def _messages(portal: RunningPortal, tx_id: str) -> list[str]:
    return [m.text for m in portal.store.messages(tx_id)]


def _code(portal: RunningPortal, secret: str) -> str:
    return str(pyotp.TOTP(secret).at(portal.clock()))


async def _landed(page: Page, path: str) -> None:
    await page.wait_for_url(f"**{path}")
    await ready(page)


def test_invitation_enrolment_and_sign_in_in_chromium(tmp_path: Path) -> None:
    async def main() -> None:
        with smtp_sink() as sink:
            async with running_portal(tmp_path, smtp_host="127.0.0.1",
                                      smtp_port=sink.port) as portal, \
                    async_playwright() as playwright:
                made = await portal.call("POST", "/api/v1/workspaces",
                                         {"name": "Agence Dupont"}, auth=True, expect=201)
                await portal.call("POST", f"/api/v1/workspaces/{made['id']}/invitations",
                                  {"email": "olga@example.test", "role": "owner"},
                                  auth=True, expect=201)
                token = await sink.link("olga@example.test", "/join/")
                browser = await launch_chromium(playwright)
                page = await (await browser.new_context()).new_page()
                await page.goto(f"{portal.url}/join/{token}?lang=en")
                await ready(page)
                assert await page.text_content("#join-h") == "Agence Dupont"
                await check_page(page)
                await page.fill("#name", "Olga Kowalska")
                await page.fill("#password", PASSWORD)
                await page.click("#join-submit")
                await page.locator("#enrol-step").wait_for()
                secret = (await page.text_content("#enrol-secret") or "").strip()
                await check_page(page)
                await page.fill("#enrol-code", _code(portal, secret))
                await page.click("#enrol-form button[type=submit]")
                await _landed(page, "/workspace")
                row = page.locator("tr[data-member='olga@example.test']")
                await row.wait_for()
                assert "Owner" in await row.inner_text()
                await check_page(page)

                await page.fill("#invite-email", "rita@example.test")
                await page.select_option("#invite-role", "requester")
                await page.click("#invite-form button[type=submit]")
                assert await sink.link("rita@example.test", "/join/")

                await page.goto(f"{portal.url}/settings?lang=fr")
                await ready(page)
                await page.locator("#settings").wait_for()
                assert await page.input_value("#me-name") == "Olga Kowalska"
                await check_page(page)
                await page.click("#sign-out")
                await _landed(page, "/signin")
                await page.fill("#email", "olga@example.test")
                await page.fill("#password", PASSWORD)
                await page.click("#password-submit")
                await page.locator("#totp-step").wait_for()
                assert "Code" in await page.inner_text("#totp-step")
                portal.clock.advance(seconds=30)  # the enrolment spent the current step
                await page.fill("#totp", _code(portal, secret))
                await page.click("#totp-form button[type=submit]")
                await _landed(page, "/workspace")
                assert await page.text_content("#ws-select option") == "Agence Dupont"

                # the requester page works in the session's workspace, with its CSRF token
                tx = await portal.call("POST", f"/api/v1/workspaces/{made['id']}/transactions",
                                       new_transaction("Lease"), auth=True, expect=201)
                await page.goto(f"{portal.url}/requester?tx={tx['id']}")
                await ready(page)
                await page.locator(f"li[data-transaction='{tx['id']}']").wait_for()
                await page.fill("#reply-text", "Page 2, please")
                await page.click("#reply-form button[type=submit]")
                await until_async(lambda: _messages(portal, tx["id"]), "the message stored")

                await page.set_viewport_size({"width": 375, "height": 800})  # a phone
                for path in ("/workspace", "/settings", "/requester"):
                    await page.goto(f"{portal.url}{path}?lang=fr")
                    await ready(page)
                    await check_page(page)  # labelled, no horizontal scroll
                await browser.close()
    asyncio.run(main())
