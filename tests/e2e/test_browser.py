"""The browser client in a real browser: Debian's Chromium (/usr/bin/chromium), driven by
Playwright with `executable_path` (no browser download), loads pages served on loopback
under realistic origins and talks to an in-process agent through /v1/qsign.js
(tests/support/chromium.py says why each Chromium flag).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key
from playwright.async_api import Page, async_playwright

from agent.tokens.registry import TokenRegistry
from tests.integration.test_agent_signing import (
    PIN,
    _credential,
    _enrol_totp,
    _provisioned,
    _spki_of,
)
from tests.support.agent_ws import Agent, with_agent
from tests.support.chromium import launch_chromium
from tests.support.cli import run_qsign
from tests.support.pcsc import RunningCard
from tests.support.ports import free_port

WEB = Path(__file__).resolve().parents[2] / "agent" / "web"
TEST_PAGE = "<!doctype html><html><head><meta charset='utf-8'><title>qsign test</title>" \
            "</head><body><p>qsign e2e</p></body></html>"


def _origin(host: str, port: int) -> str:
    return f"http://{host}.example.test:{port}"


async def _page_server(port: int) -> TestServer:
    """The web site's own server (not the agent): the demo page and a blank test page."""

    async def demo(_: web.Request) -> web.Response:
        return web.Response(text=(WEB / "demo.html").read_text(), content_type="text/html")

    async def blank(_: web.Request) -> web.Response:
        return web.Response(text=TEST_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/demo.html", demo)
    app.router.add_get("/test.html", blank)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server


def with_browser(tmp_path: Path, page_host: str, *, registry: TokenRegistry | None = None,
                 allowed: tuple[str, ...] = ("portal",)
                 ) -> Callable[[Callable[[Agent, Page, str], Awaitable[None]]], None]:
    """Run a scenario with an agent, the page server, and a Chromium page at
    http://<page_host>.example.test:PAGEPORT/test.html (console messages are kept)."""
    page_port = free_port()

    def runner(scenario: Callable[[Agent, Page, str], Awaitable[None]]) -> None:
        origins = tuple(_origin(h, page_port) for h in allowed)

        @with_agent(tmp_path, registry=registry, allowed_origins=origins)
        async def main(agent: Agent) -> None:
            pages = await _page_server(page_port)
            origin = _origin(page_host, page_port)
            try:
                async with async_playwright() as playwright:
                    browser = await launch_chromium(playwright, secure_origin=origin)
                    try:
                        page = await browser.new_page()
                        console: list[str] = []
                        page.on("console", lambda m: console.append(m.text))
                        await page.goto(f"{origin}/test.html")
                        try:
                            await scenario(agent, page, origin)
                        except BaseException:
                            print("browser console:\n" + "\n".join(console))
                            raise
                        assert PIN not in "\n".join(console), "a PIN reached the console"
                    finally:
                        await browser.close()
            finally:
                await pages.close()

    return runner


async def _in_page(page: Page, agent: Agent, body: str, **args: Any) -> Any:
    """Run `body` in the page with `q` = the imported qsign.js module and `args`."""
    script = ("async (args) => { const q = await import("
              "`http://127.0.0.1:${args.port}/v1/qsign.js`);\n" + body + "\n}")
    return await page.evaluate(script, {"port": agent.config.port, **args})


def _verify(cert_der: bytes, digest: bytes, signature_b64: str) -> None:
    public = load_der_public_key(_spki_of(cert_der))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(signature_b64), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


async def _enrol_from_python(agent: Agent, origin: str) -> tuple[str, pyotp.TOTP]:
    ws = await agent.connect(origin=origin)
    try:
        credential = await _credential(agent, ws)
        return credential, await _enrol_totp(ws, credential, agent.config.state_dir)
    finally:
        await ws.close()


def test_script_is_served_with_its_headers(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        url = agent.url + "/v1/qsign.js"
        async with agent.session.get(url, headers={"Host": f"127.0.0.1:{agent.config.port}"}
                                     ) as response:
            assert response.status == 200
            assert response.content_type == "application/javascript"
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            text = await response.text()
        assert text == (WEB / "qsign.js").read_text()
        assert "export async function connect" in text
        async with agent.session.get(url, headers={"Host": "evil.example.test"}) as response:
            assert response.status == 421, "the Host check covers the script too"


def test_allowed_origin_lists_authorises_and_signs(simulated_card: RunningCard,
                                                   tmp_path: Path) -> None:
    _, cert_der = _provisioned(simulated_card)
    text = "I agree to the terms, 2026-11-25."

    @with_browser(tmp_path, "portal", registry=TokenRegistry())
    async def scenario(agent: Agent, page: Page, origin: str) -> None:
        credential, totp = await _enrol_from_python(agent, origin)
        listed = await _in_page(page, agent, """
            const client = await q.connect({port: args.port});
            const info = await client.info();
            const {tokens} = await client.listTokens();
            const {credentials} = await client.listCredentials(tokens[0].id);
            client.close();
            return {origin: info.origin, tokens, credentials};
        """)
        assert listed["origin"] == origin
        assert len(listed["tokens"]) == 1
        assert credential in [c["credentialID"] for c in listed["credentials"]]

        signed = await _in_page(page, agent, """
            const client = await q.connect({port: args.port});
            const digest = await q.sha256(args.text);
            const {sad, expiresIn} = await client.authorize({
                credentialID: args.credential, hashes: [digest], pin: args.pin, otp: args.otp});
            const signatures = await client.signHash({
                credentialID: args.credential, sad, hashes: [digest]});
            let replay = null;
            try {
                await client.signHash({credentialID: args.credential, sad, hashes: [digest]});
            } catch (e) {
                replay = {name: e.name, code: e.code, isError: e instanceof Error};
            }
            client.close();
            return {digest: q.toBase64(digest), expiresIn, signatures, replay};
        """, text=text, credential=credential, pin=PIN, otp=totp.now())
        digest = hashlib.sha256(text.encode()).digest()
        assert base64.b64decode(signed["digest"]) == digest
        assert 0 < signed["expiresIn"] <= 300
        assert len(signed["signatures"]) == 1
        _verify(cert_der, digest, signed["signatures"][0])
        assert signed["replay"] == {"name": "QsignError", "code": "SAD_INVALID", "isError": True}

        wrong_pin = await _in_page(page, agent, """
            const client = await q.connect({port: args.port});
            const digest = await q.sha256("other");
            try {
                await client.authorize({credentialID: args.credential, hashes: [digest],
                                        pin: "000000", otp: args.otp});
                return null;
            } catch (e) {
                return {code: e.code, attemptsLeft: e.attemptsLeft, rpcCode: e.rpcCode};
            } finally {
                client.close();
            }
        """, credential=credential, otp=totp.at(time.time() + 30))  # the next step, once
        assert wrong_pin is not None and wrong_pin["code"] == "INVALID_PIN"
        assert isinstance(wrong_pin["attemptsLeft"], int) and wrong_pin["attemptsLeft"] >= 1


def test_demo_page_signs_typed_text(simulated_card: RunningCard, tmp_path: Path) -> None:
    _, cert_der = _provisioned(simulated_card)
    text = "Signed from the demo page."

    @with_browser(tmp_path, "portal", registry=TokenRegistry())
    async def scenario(agent: Agent, page: Page, origin: str) -> None:
        credential, totp = await _enrol_from_python(agent, origin)
        await page.goto(f"{origin}/demo.html?port={agent.config.port}")
        await page.wait_for_function("window.qsignDemoReady === true")
        await page.click("#connect")
        await page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('connected')")
        await page.click("#list")
        await page.wait_for_function("document.getElementById('credential').options.length > 0")
        await page.select_option("#credential", credential)
        await page.fill("#text", text)
        await page.fill("#pin", PIN)
        await page.fill("#otp", totp.now())
        await page.click("#sign")
        await page.wait_for_function(
            "['signed'].includes(document.getElementById('status').textContent) || "
            "document.getElementById('status').textContent.includes(':')")
        assert await page.text_content("#status") == "signed"
        assert await page.input_value("#pin") == "", "the demo keeps no PIN"
        digest = hashlib.sha256(text.encode()).digest()
        assert base64.b64decode(await page.text_content("#digest") or "") == digest
        _verify(cert_der, digest, await page.text_content("#signature") or "")


def test_other_origin_is_refused_at_the_handshake(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.protocol.ws")

    @with_browser(tmp_path, "evil")
    async def scenario(agent: Agent, page: Page, origin: str) -> None:
        outcome = await _in_page(page, agent, """
            try {
                await q.connect({port: args.port});
                return "connected";
            } catch (e) {
                return {name: e.name, code: e.code};
            }
        """)
        assert outcome == {"name": "QsignError", "code": "CONNECT_FAILED"}
        assert "refused a handshake from an unpaired origin" in caplog.text, \
            "the browser's handshake must reach the agent and be refused there"
        assert await agent.status(origin) == 403
        health = await _health(agent)
        assert health["connections"] == 0


def test_pairing_from_the_page_then_approved_by_the_cli(tmp_path: Path) -> None:
    @with_browser(tmp_path, "newsite")
    async def scenario(agent: Agent, page: Page, origin: str) -> None:
        connect = """
            try {
                const client = await q.connect({port: args.port});
                const info = await client.info();
                client.close();
                return {origin: info.origin};
            } catch (e) {
                return {code: e.code};
            }
        """
        assert await _in_page(page, agent, connect) == {"code": "CONNECT_FAILED"}
        asked = await _in_page(page, agent, "return await q.pair({port: args.port});")
        assert asked["paired"] is False
        code = asked["code"]
        assert len(code.replace("-", "")) == 8
        config = tmp_path / "agent.toml"
        config.write_text(f'[agent]\nstate_dir = "{agent.config.state_dir}"\n')
        approved = await asyncio.to_thread(run_qsign, "agent", "approve", code,
                                           "--config", str(config))
        assert approved.returncode == 0, approved.stderr
        assert origin in approved.stdout
        assert await _in_page(page, agent, connect) == {"origin": origin}
        again = await _in_page(page, agent, "return await q.pair({port: args.port});")
        assert again == {"paired": True}


async def _health(agent: Agent) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            agent.url + "/v1/health",
            headers={"Host": f"127.0.0.1:{agent.config.port}"}) as response:
        body: dict[str, Any] = await response.json()
        return body
