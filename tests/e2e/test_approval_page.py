"""The agent's own pairing page in Debian's Chromium (setup in tests/e2e/test_browser.py):
a page that asks for pairing cannot approve itself, the person approves in the agent's
page opened at the URL `qsign agent approve --open` prints, and that page refuses to be
framed."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

from agent.protocol.approve import approval_url, read_secret
from tests.e2e.test_browser import _in_page, with_browser
from tests.support.agent_ws import Agent
from tests.support.waiting import wait_until_async


def test_pairing_approved_in_the_agents_own_page(tmp_path: Path) -> None:
    @with_browser(tmp_path, "newsite")
    async def scenario(agent: Agent, page: Page, origin: str) -> None:
        asked = await _in_page(page, agent, "return await q.pair({port: args.port});")
        code = asked["code"]
        secret = read_secret(agent.config.state_dir)
        assert secret is not None
        # The asking page cannot approve itself: not without the secret, and not with it
        # either (its Origin is not the agent's; the header needs a preflight never granted).
        attempts = await page.evaluate("""async (args) => {
            const base = `http://127.0.0.1:${args.port}/v1/approve/decide`;
            const body = JSON.stringify({code: args.code, action: "approve"});
            const outcomes = [];
            for (const init of [
                {method: "POST", mode: "no-cors", body},
                {method: "POST", body, headers: {"Content-Type": "application/json"}},
                {method: "POST", body, headers: {"Content-Type": "application/json",
                                                 "X-Qsign-Approval": args.secret}},
            ]) {
                try {
                    const r = await fetch(base, init);
                    outcomes.push(r.type === "opaque" ? "opaque" : r.status);
                } catch (e) {
                    outcomes.push("blocked");
                }
            }
            return outcomes;
        }""", {"port": agent.config.port, "code": code, "secret": secret})
        # no-cors reaches the agent (refused: no secret, foreign Origin) and its answer is
        # withheld (Cross-Origin-Resource-Policy); the others stop at the preflight.
        assert attempts == ["blocked", "blocked", "blocked"], attempts
        connect = """
            try {
                const client = await q.connect({port: args.port});
                client.close();
                return "connected";
            } catch (e) {
                return e.code;
            }
        """
        assert await _in_page(page, agent, connect) == "CONNECT_FAILED"

        browser = page.context.browser
        assert browser is not None
        own = await browser.new_page()
        await own.goto(approval_url(agent.config.port, secret))
        assert "#" not in own.url, "the secret stays in the address bar"
        button = own.locator(f"button[data-action='approve'][data-code='{code.replace('-', '')}']")
        await button.wait_for()
        assert origin in (await own.text_content("#pending") or "")
        await button.click()
        # Polled with locators: the page's CSP forbids eval, which wait_for_function uses.
        await own.locator("#status", has_text="paired:").wait_for()
        assert await own.text_content("#status") == f"paired: {origin}"
        assert await _in_page(page, agent, connect) == "connected"

        # Framing the page is refused (clickjacking): Chromium shows its error page in
        # the frame instead of the approval page. The frame's load event says it is done.
        await page.evaluate("""(url) => new Promise((resolve) => {
            const frame = document.createElement("iframe");
            frame.addEventListener("load", () => resolve(null), {once: true});
            frame.src = url;
            document.body.append(frame);
        })""", approval_url(agent.config.port, secret))
        # Playwright learns the frame's address a moment after the load event (it read
        # '' once on a loaded machine): wait for an address, then judge it.
        frames = await wait_until_async(
            lambda: [f.url for f in page.frames if f is not page.main_frame and f.url],
            "the framed page's address")
        assert frames == ["chrome-error://chromewebdata/"], frames


def test_a_confirmation_is_given_in_the_agents_own_page(tmp_path: Path) -> None:
    """SECURITY #33: a second factor by a person's confirmation outside the page. The
    page cannot approve what it asked; the agent's own page shows what approving allows,
    and only then does the asking connection get its grant."""

    @with_browser(tmp_path, "portal")
    async def scenario(agent: Agent, page: Page, origin: str) -> None:
        ask = """
            const client = await q.connect({port: args.port});
            window.qsignClient = client;
            try {
                await client.call("secondFactor/verify", {tokenID: "piv-e2e"});
                return null;
            } catch (e) {
                return {error: e.code, code: e.data.code};
            }
        """
        asked = await _in_page(page, agent, ask)
        assert asked["error"] == "CONFIRMATION_REQUIRED", asked
        code = asked["code"]
        use = """
            try {
                return await window.qsignClient.call("secondFactor/verify",
                    {tokenID: "piv-e2e", confirmation: args.code});
            } catch (e) {
                return {error: e.code};
            }
        """
        before = await page.evaluate("async (args) => {" + use + "}", {"code": code})
        assert before == {"error": "CONFIRMATION_REQUIRED"}, "not approved yet"

        secret = read_secret(agent.config.state_dir)
        assert secret is not None
        browser = page.context.browser
        assert browser is not None
        own = await browser.new_page()
        await own.goto(approval_url(agent.config.port, secret))
        button = own.locator(f"button[data-action='approve'][data-code='{code.replace('-', '')}']")
        await button.wait_for()
        listed = await own.text_content("#pending") or ""
        assert origin in listed and "PIN or PUK of token piv-e2e" in listed
        await button.click()
        await own.locator("#status", has_text="confirmed:").wait_for()
        after = await page.evaluate("async (args) => {" + use + "}", {"code": code})
        assert after["method"] == "confirmation" and after["tokenID"] == "piv-e2e", after
