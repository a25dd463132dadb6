"""The whole stack for the portal's pages in a real browser: the CA (`qsign ca serve`)
on loopback, the simulated card enrolled by it (a QCP-n-qscd certificate in slot 9C) or
left factory-fresh for the first-time signer (`enrol=False`), an SMTP sink (aiosmtpd),
the portal (`portal.service.create_app`, its identity service's evidence key trusted by
the CA, specimens accepted) and the agent (`agent.app.create_app`, SMS OTP relayed to
the portal, enrolment to the CA) in process, and Debian's Chromium through Playwright
(tests/support/chromium.py says why each flag).

The page's origin is http://portal.example.test:PORT (mapped to 127.0.0.1), the one
origin the agent allows.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from agent.app import create_app as create_agent
from agent.config import AgentConfig
from agent.tokens.model import KeyType
from agent.tokens.piv import PivToken
from agent.tokens.registry import TokenRegistry
from firmware_sim.attestation import Manufacturer
from portal.agent_auth import new_agent_token
from portal.config import PortalConfig
from portal.identity.evidence import EvidenceSigner
from portal.service import create_app as create_portal
from portal.store import Store, utcnow
from qsign.validation_setup import demo_trusted_list, seal_from_ca
from tests.support.ca_fixtures import b64, card_csr
from tests.support.ca_process import RunningCa, start_ca
from tests.support.chromium import launch_chromium
from tests.support.pcsc import RunningCard, connect
from tests.support.pdfs import blank_pdf
from tests.support.ports import free_port
from tests.support.provision import PyscardConnection
from tests.support.waiting import wait_until_async

PIN = "123456"
PHONE = "+33612345678"
PHONE_2 = "+33698765432"


def artefacts(tmp_path: Path) -> Path:
    """Where screenshots go: $QSIGN_ARTEFACTS/<test dir name> or the pytest tmp dir."""
    base = os.environ.get("QSIGN_ARTEFACTS")
    directory = Path(base) / tmp_path.name if base else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def enrol_card(card: RunningCard, ca: RunningCa, slot: str = "9C") -> bytes:
    """A key made on the card, certified by the CA (attestation + identity evidence),
    and the certificate written back to the card: what the enrolment issue automates."""
    connection = connect(card.reader)
    try:
        token = PivToken(PyscardConnection(connection))
        spki = token.generate_key(slot, KeyType.EC_P256)
        body = {"csr": b64(card_csr(token, slot, spki, PIN)),
                "attestation": [b64(d) for d in token.attest(slot)],
                "evidence": ca.identity.evidence(hashlib.sha256(spki).hexdigest())}
        status, reply = ca.post_json("/v1/enrol", body)
        assert status == 201, reply
        der = base64.b64decode(reply["certificate"])
        token.put_certificate(slot, der)
        return der
    finally:
        connection.disconnect()


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str


@dataclass
class SmtpSink:
    """aiosmtpd on loopback: every message the portal sends, parsed."""

    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        text = part.get_content() if part is not None else ""
        self.mails.append(Mail(list(envelope.rcpt_tos), str(message["subject"]), text))
        return "250 OK"

    def links(self, to: str, kind: str = "/s/") -> list[str]:
        found = []
        for mail in self.mails:
            if to in mail.to:
                found += re.findall(rf"https?://[^\s\"'<>]+{re.escape(kind)}[^\s\"'<>]+",
                                    mail.body)
        return found


class ShiftedClock:
    """The portal's clock, moved forward by tests (code resend delays, code expiry)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


@dataclass
class Stack:
    origin: str
    portal_port: int
    agent_port: int
    token: str
    ca: RunningCa
    smtp: SmtpSink
    session: aiohttp.ClientSession
    browser: Browser
    shots: Path
    state_dir: Path
    clock: ShiftedClock
    console: list[str] = field(default_factory=list)
    identity_pem: Path | None = None  # the portal's identity service, trusted by the CA

    def api(self, path: str) -> str:
        return f"http://127.0.0.1:{self.portal_port}{path}"

    async def requester(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.api(path), json=body, headers={
                "Authorization": f"Bearer {self.token}"}) as response:
            assert response.status < 300, (response.status, await response.text())
            return await response.json()

    async def document(self, transaction: dict[str, Any], document: dict[str, Any]) -> bytes:
        """A document's latest version, as the requester downloads it."""
        async with self.session.get(
                self.api(f"/api/v1/transactions/{transaction['id']}/documents/"
                         f"{document['id']}"),
                headers={"Authorization": f"Bearer {self.token}"}) as response:
            assert response.status == 200
            return await response.read()

    async def one_signer_transaction(self, title: str, signer: str = "Marie Curie",
                                     email: str = "marie@example.test", phone: str = PHONE, *,
                                     requester: tuple[str, str] = ("R", "r@example.test"),
                                     document: str = "one.pdf", pages: int = 1,
                                     lang: str | None = "en", **options: Any) -> Any:
        """A transaction made through the requester API: one blank PDF, one signer (with
        no `lang` the page goes by the browser's); `options` adds fields such as level."""
        invited = {"name": signer, "email": email, "phone": phone}
        if lang is not None:
            invited["lang"] = lang
        return await self.requester("POST", "/api/v1/transactions", {
            "title": title, "requester": {"name": requester[0], "email": requester[1]},
            "documents": [{"name": document,
                           "content": base64.b64encode(blank_pdf(pages)).decode()}],
            "signers": [invited], **options})

    def invitation(self, transaction: Any, index: int = 0) -> str:
        """The signer's invitation link as a browser opens it (the API may answer a path)."""
        invite: str = transaction["signers"][index]["inviteUrl"]
        return invite if invite.startswith("http") else self.origin + invite

    async def sms_code(self, phone: str, before: int = 0) -> str:
        """The newest 6-digit code texted to `phone` after the first `before` messages."""
        async def texted() -> list[dict[str, Any]]:
            sms = (await self.requester("GET", f"/api/v1/outbox?to={quote(phone)}"))["sms"]
            return [m for m in sms[before:] if re.search(r"\b\d{6}\b", m["text"])]

        codes = await wait_until_async(texted, f"an SMS code for {phone}", interval=0.1)
        match = re.search(r"\b(\d{6})\b", max(codes, key=lambda m: m["at"])["text"])
        assert match
        return match.group(1)

    async def sms_count(self, phone: str) -> int:
        return len((await self.requester("GET", f"/api/v1/outbox?to={quote(phone)}"))["sms"])

    async def page(self, width: int = 1280, height: int = 900) -> tuple[BrowserContext, Page]:
        context = await self.browser.new_context(viewport={"width": width, "height": height},
                                                 accept_downloads=True)
        page = await context.new_page()
        page.on("console", lambda m: self.console.append(m.text))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        return context, page

    async def shot(self, page: Page, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


def portal_identity_key(state: Path) -> Path:
    """The portal's identity service key, made where the portal opens it
    (portal/routes/identity.py: EvidenceSigner.open(<state>/identity)); its certificate's path."""
    signer = EvidenceSigner.open(state / "identity")
    pem_path = state.parent / "portal-identity.pem"
    pem_path.write_bytes(signer.certificate_pem)
    return pem_path


@asynccontextmanager
async def portal_stack(tmp_path: Path, manufacturer: Manufacturer, card: RunningCard,
                       *, enrol: bool = True, browser_args: Sequence[str] = (),
                       otp_mode: str = "sms") -> AsyncIterator[Stack]:
    """`enrol=False` leaves the card factory-fresh (no key, factory PIN) for the
    first-time signer; `browser_args` are added to Chromium's command line; `otp_mode`
    is the agent's ("any" takes its TOTP codes too)."""
    identity_pem = portal_identity_key(tmp_path / "portal")
    ca = await asyncio.to_thread(start_ca, tmp_path, manufacturer, [identity_pem])
    try:
        if enrol:
            await asyncio.to_thread(enrol_card, card, ca)
        sink = SmtpSink()
        smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
        smtp.start()
        try:
            async with _servers(tmp_path, ca, sink, smtp.port, browser_args,
                                otp_mode) as stack:
                stack.identity_pem = identity_pem
                yield stack
        finally:
            smtp.stop()
    finally:
        await asyncio.to_thread(ca.stop)


def run_on_stack(tmp_path: Path, manufacturer: Manufacturer, card: RunningCard,
                 scenario: Callable[[Stack], Awaitable[None]], *,
                 secrets: Sequence[str] = (), otp_mode: str = "sms") -> None:
    """`scenario` on a fresh stack: the browser console printed when it fails; after it,
    no page error and none of `secrets` (PINs) in the console."""
    async def main() -> None:
        async with portal_stack(tmp_path, manufacturer, card, otp_mode=otp_mode) as stack:
            try:
                await scenario(stack)
            except BaseException:
                print("browser console:\n" + "\n".join(stack.console))
                raise
            console = "\n".join(stack.console)
            for secret in secrets:
                assert secret not in console, "a PIN reached the console"
            assert not [c for c in stack.console if c.startswith("pageerror")], stack.console

    asyncio.run(main())


@asynccontextmanager
async def _servers(tmp_path: Path, ca: RunningCa, sink: SmtpSink, smtp_port: int,
                   browser_args: Sequence[str] = (), otp_mode: str = "sms"
                   ) -> AsyncIterator[Stack]:
    portal_port, agent_port = free_port(), free_port()
    origin = f"http://portal.example.test:{portal_port}"
    state = tmp_path / "portal"
    agent_token, digest = new_agent_token()  # the agent's credential at the SMS OTP routes
    agent_token_file = tmp_path / "agent-portal.token"
    agent_token_file.write_text(agent_token + "\n")
    # The CA's demo trusted list and the portal's seal: /validate shows its QES (issue 16).
    validation = demo_trusted_list(ca.directory, tmp_path / "validation")
    seal_from_ca(ca.directory, ca.database_url, state)
    config = PortalConfig(
        host="127.0.0.1", port=portal_port, public_url=origin, state_dir=state,
        agent_port=agent_port, trust_roots=(ca.directory / "certs" / "root.pem",),
        intermediates=(ca.directory / "certs" / "issuing.pem",),
        ca_issuers_prefixes=(ca.base + "/",),
        timestamp_url=ca.base + "/tsa", smtp_host="127.0.0.1", smtp_port=smtp_port,
        identity_accept_specimens=True, agent_token_sha256=(digest,), validation=validation)
    clock = ShiftedClock()
    store = Store.open(None, state, clock=clock)
    portal = TestServer(create_portal(config, store=store), host="127.0.0.1",
                        port=portal_port)
    await portal.start_server()
    agent_config = AgentConfig(port=agent_port, state_dir=tmp_path / "agent", pcsc=False,
                               pkcs11_modules=(), allowed_origins=(origin,),
                               portal_url=f"http://127.0.0.1:{portal_port}", otp_mode=otp_mode,
                               portal_token_file=agent_token_file, ca_url=ca.base)
    agent = TestServer(create_agent(agent_config, TokenRegistry()), host="127.0.0.1",
                       port=agent_port)
    await agent.start_server()
    session = aiohttp.ClientSession()
    try:
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright, secure_origin=origin,
                                            args=browser_args)
            try:
                token = (state / "requester.token").read_text().strip()
                yield Stack(origin, portal_port, agent_port, token, ca, sink, session,
                            browser, artefacts(tmp_path), state, clock)
            finally:
                await browser.close()
    finally:
        await session.close()
        await agent.close()
        await portal.close()


# Checks every page must pass -----------------------------------------------------------

UNLABELLED_CONTROLS = """() => {
  const bad = [];
  for (const c of document.querySelectorAll('input, select, textarea')) {
    if (c.type === 'hidden' || c.closest('[hidden]')) continue;
    const labelled = (c.labels && c.labels.length > 0) || c.getAttribute('aria-label')
      || c.getAttribute('aria-labelledby');
    if (!labelled) bad.push(c.outerHTML.slice(0, 120));
  }
  for (const b of document.querySelectorAll('button')) {
    if (b.closest('[hidden]')) continue;
    const named = b.textContent.trim() || b.getAttribute('aria-label');
    if (!named) bad.push(b.outerHTML.slice(0, 120));
  }
  return bad;
}"""

HORIZONTAL_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  const scroll = document.documentElement.scrollWidth;
  if (scroll > width) wide.push('document ' + scroll);
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1 && getComputedStyle(e).position !== 'absolute')
      wide.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right));
  }
  return wide.slice(0, 10);
}"""


async def check_page(page: Page) -> None:
    """Every visible control labelled, no horizontal scroll, no untranslated key shown."""
    assert await page.evaluate(UNLABELLED_CONTROLS) == []
    assert await page.evaluate(HORIZONTAL_OVERFLOW) == []
    text = await page.evaluate("() => document.body.innerText")
    keys = re.findall(r"\b(?:common|sign|signer|documents|consent|error|agentError|create|"
                      r"detail|me|outbox|status|token|list|enrol|capture|challenge|"
                      r"caReason|phone)\.[A-Za-z_]+\b", text)
    assert keys == [], f"untranslated keys shown: {keys}"


async def assert_signed_b_lt(stack: Stack, transaction: dict[str, Any],
                             certificate: bytes | None = None) -> None:
    """pyHanko, offline, trusting the CA's root only: every document of `transaction`
    intact and valid, B-LT (a DSS, a signature-time-stamp), under a qualified certificate
    (QC statements, QCP-n-qscd), and under exactly `certificate` when given."""
    from asn1crypto import pem

    from portal.certificates import check_qualified
    from tests.support.portal_pki import validate_pdf

    root = pem.unarmor((stack.ca.directory / "certs" / "root.pem").read_bytes())[2]
    issuing = pem.unarmor((stack.ca.directory / "certs" / "issuing.pem").read_bytes())[2]
    for document in transaction["documents"]:
        pdf = await stack.document(transaction, document)
        result = await validate_pdf(pdf, [root], offline=True)
        assert result.has_dss and len(result.statuses) == 1
        [status] = result.statuses
        assert status.bottom_line, status.pretty_print_details()  # type: ignore[no-untyped-call]
        assert status.timestamp_validity is not None
        signer = status.signing_cert.dump()
        if certificate is not None:
            assert signer == certificate
        checked = await check_qualified(signer, [issuing], trust_roots=[root],
                                        at=stack.clock(), ocsp=False)
        assert checked.qualified, checked.reasons


async def until(page: Page, expression: str, tries: int = 1200) -> None:
    """Poll a JS expression (the pages' CSP forbids eval, which wait_for_function uses)."""
    for _ in range(tries):
        if await page.evaluate(f"() => Boolean({expression})"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never true in the page: {expression}")


async def ready(page: Page) -> None:
    await page.wait_for_selector("body[data-ready='true']")
