"""What a requester does in the portal's own pages, one step each, for the browser tests
of issue 15 on a portal served on loopback (tests/support/portal_service.py): join a
workspace from the invitation mail and enrol TOTP, create an API token in /settings, and
call the API with the page's own session cookie and CSRF token."""

from __future__ import annotations

from typing import Any

import pyotp
from playwright.async_api import APIResponse, Page

from tests.support.portal_e2e import ready
from tests.support.portal_service import RunningPortal
from tests.support.smtp_sink import SmtpSink

PASSWORD = "correct horse battery"


async def join(page: Page, portal: RunningPortal, sink: SmtpSink, email: str,
               name: str) -> str:
    """The invitation mailed to `email` opened at /join/, a name and password chosen,
    TOTP enrolled with a code computed (RFC 6238) from the key the page shows; the page
    then lands on /workspace signed in. Returns the TOTP secret."""
    token = await sink.link(email, "/join/")
    await page.goto(f"{portal.url}/join/{token}?lang=en")
    await ready(page)
    await page.fill("#name", name)
    await page.fill("#password", PASSWORD)
    await page.click("#join-submit")
    await page.locator("#enrol-step").wait_for()
    secret = (await page.text_content("#enrol-secret") or "").strip()
    await page.fill("#enrol-code", str(pyotp.TOTP(secret).at(portal.clock())))
    await page.click("#enrol-form button[type=submit]")
    await page.wait_for_url("**/workspace")
    await ready(page)
    await page.locator(f"tr[data-member='{email}']").wait_for()
    return secret


async def new_api_token(page: Page, portal: RunningPortal, name: str) -> str:
    """An API token of the signed-in user for their first workspace, made in /settings
    and read from where the page shows it once."""
    await page.goto(f"{portal.url}/settings?lang=en")
    await ready(page)
    await page.locator("#settings").wait_for()
    await page.fill("#token-name", name)
    await page.click("#token-form button[type=submit]")
    await page.locator("#token-shown:not([hidden])").wait_for()
    return (await page.text_content("#token-value") or "").strip()


async def session_call(page: Page, portal: RunningPortal, method: str, path: str,
                       body: Any = None) -> APIResponse:
    """`method path` with the page's session cookie (the browser context's request
    client shares its cookie jar) and the session's CSRF token, as the pages send it."""
    view = await (await page.context.request.get(portal.url + "/api/auth/session")).json()
    headers = {"X-CSRF-Token": view.get("csrf", ""), "Sec-Fetch-Site": "same-origin",
               "Content-Type": "application/json"}
    return await page.context.request.fetch(portal.url + path, method=method,
                                            headers=headers, data=body)


async def join_with_provider(page: Page, portal: RunningPortal, sink: SmtpSink,
                             email: str) -> None:
    """The invitation mailed to `email` accepted with the organisation's OpenID Connect
    provider: /join/'s provider button, the provider's redirects followed by the browser,
    back on /requester signed in (the provider is trusted for the second factor)."""
    token = await sink.link(email, "/join/")
    await page.goto(f"{portal.url}/join/{token}?lang=en")
    await ready(page)
    await page.click("#join-oidc")
    await page.wait_for_url("**/requester**")
    await ready(page)
