"""The portal's request hygiene in Debian's Chromium (Playwright, `executable_path`):

- a page on another site (http://evil.example.test, mapped to 127.0.0.1 with
  `--host-resolver-rules`) submits a form POST to the signer's `refuse`, the classic
  JSON-in-text/plain forgery, and fires `no-cors` and CORS fetches: the portal answers
  CROSS_SITE and the signer's state does not change; the portal's own origin still can
  (SECURITY.md #43, portal/cross_site.py);
- documents accepted with `"activeContent": "warn"` are named, with what they hold, in a
  warning on the signer's page before acceptance (SECURITY.md #45).
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, async_playwright

from tests.support.active_pdfs import javascript_in_object_stream
from tests.support.chromium import launch_chromium
from tests.support.pdfs import blank_pdf
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.ports import free_port


def _attack_page(target: str) -> str:
    """A form whose text/plain body reads as JSON, submitted on load; then fetches."""
    field = html.escape('{"reason": "forged by evil.example.test", "pad": "', quote=True)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>win a prize</title>
</head><body><form id="f" method="POST" enctype="text/plain" action="{target}">
<input type="hidden" name="{field}" value='"}}'></form>
<script>document.getElementById("f").submit();</script></body></html>"""


@asynccontextmanager
async def _browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            yield browser
        finally:
            await browser.close()


async def _signer_at_documents(portal: RunningPortal, **extra: object) -> str:
    tx = await portal.create(signers=1, documents=1, **extra)
    invite = portal.invite_path(tx, 0)
    await portal.consent(invite)
    return invite


def test_another_site_cannot_make_the_browser_refuse(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, _browser() as browser:
            portal_origin = f"http://portal.example.test:{portal.server.port}"
            invite = await _signer_at_documents(portal)
            refuse = f"{portal_origin}/api/s/{invite}/refuse"

            async def attack(_: web.Request) -> web.Response:
                return web.Response(text=_attack_page(refuse), content_type="text/html")

            async def blank(_: web.Request) -> web.Response:
                return web.Response(text="<!doctype html><title>blank</title>",
                                    content_type="text/html")

            app = web.Application()
            app.router.add_get("/attack.html", attack)
            app.router.add_get("/blank.html", blank)
            evil = TestServer(app, host="127.0.0.1", port=free_port())
            await evil.start_server()
            try:
                page = await browser.new_page()
                async with page.expect_response(lambda r: r.url == refuse) as caught:
                    await page.goto(f"http://evil.example.test:{evil.port}/attack.html")
                response = await caught.value
                sent = await response.request.all_headers()
                # Chromium sends Sec-Fetch-* to secure origins only: here Origin decides.
                assert sent.get("sec-fetch-site", "cross-site") == "cross-site", sent
                assert sent["content-type"].startswith("text/plain"), sent
                assert sent["origin"] == f"http://evil.example.test:{evil.port}", sent
                assert response.status == 403, await response.text()
                assert (await response.json())["error"] == "CROSS_SITE"
                # Fetches from the same page: no-cors with text/plain (sent, refused,
                # answer hidden), and JSON (stopped at the preflight).
                await page.goto(f"http://evil.example.test:{evil.port}/blank.html")
                outcomes = await page.evaluate("""async (url) => {
                    const body = JSON.stringify({reason: "forged by fetch"});
                    const out = [];
                    for (const init of [{method: "POST", mode: "no-cors", body},
                                        {method: "POST", body, headers:
                                         {"Content-Type": "application/json"}}]) {
                        try { out.push((await fetch(url, init)).type); }
                        catch (e) { out.push("blocked"); }
                    }
                    return out;
                }""", refuse)
                assert outcomes == ["opaque", "blocked"], outcomes
                view = await portal.call("GET", f"/api/s/{invite}")
                assert view["step"] == "documents", view["step"]
                assert view["signer"]["refusalReason"] is None

                # The portal's own origin refuses through the same route.
                await page.goto(f"{portal_origin}/health")
                status = await page.evaluate("""async (url) => (await fetch(url, {
                    method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({reason: "I do not agree"})})).status""", refuse)
                assert status == 200
                view = await portal.call("GET", f"/api/s/{invite}")
                assert view["step"] == "refused"
                assert view["signer"]["refusalReason"] == "I do not agree"
            finally:
                await evil.close()

    asyncio.run(main())


def test_the_signer_is_warned_of_active_content_before_accepting(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal, _browser() as browser:
            body = {"title": "Lease", "level": "B-B", "activeContent": "warn",
                    "requester": {"name": "Agence", "email": "agence@example.test"},
                    "signers": [{"email": "sam@example.test", "lang": "en"}],
                    "documents": [
                        {"name": "lease.pdf", "content": base64.b64encode(
                            blank_pdf()).decode()},
                        {"name": "annex.pdf", "content": base64.b64encode(
                            javascript_in_object_stream()).decode()}]}
            tx = await portal.call("POST", "/api/v1/transactions", body, auth=True,
                                   expect=201)
            invite = portal.invite_path(tx, 0)
            await portal.consent(invite)
            en = json.loads((Path(__file__).resolve().parents[2] / "portal" / "web" / "i18n"
                             / "en.json").read_text())
            page = await browser.new_page()
            await page.goto(f"http://portal.example.test:{portal.server.port}/s/{invite}")
            await page.wait_for_selector("body[data-ready='true'][data-step='documents']")
            warning = page.locator("#active-content")
            await warning.wait_for(state="visible")
            items = await warning.locator("li").all_inner_texts()
            assert items == [en["documents.activeIn"].format(
                name="annex.pdf", what=", ".join(en[k] for k in (
                    "documents.activeJavascript", "documents.activeOpenAction")))], items
            assert en["documents.activeContent"] in await warning.inner_text()
            # The warning stands above the documents, before the accept button.
            assert await page.evaluate("""() => {
                const warning = document.getElementById("active-content");
                const accept = document.getElementById("accept");
                return Boolean(warning.compareDocumentPosition(accept)
                               & Node.DOCUMENT_POSITION_FOLLOWING);
            }""")
            assert await page.locator("#accept").is_visible()

    asyncio.run(main())
