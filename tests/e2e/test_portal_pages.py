"""Issue 6 in a real browser: the portal's pages (portal/web/) against the real portal,
agent, CA, simulated card and SMTP sink (tests/support/portal_e2e.py). Screenshots of
each step go to $QSIGN_ARTEFACTS or the test's tmp dir."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import FilePayload, Page

from agent.tokens.errors import InvalidPin, PinBlocked
from agent.tokens.piv import PivToken
from firmware_sim.attestation import Manufacturer
from portal.links import LinkSigner, Purpose
from tests.support import page_steps as steps
from tests.support.pcsc import RunningCard, connect
from tests.support.pdfs import blank_pdf
from tests.support.portal_e2e import (
    PHONE,
    PHONE_2,
    PIN,
    Stack,
    assert_signed_b_lt,
    check_page,
    run_on_stack,
)
from tests.support.portal_e2e import (
    ready as _ready,
)
from tests.support.portal_e2e import (
    until as _until,
)
from tests.support.provision import PyscardConnection
from tests.support.waiting import wait_until_async

Scenario = Callable[[Stack], Awaitable[None]]


OnStack = Callable[[Scenario], None]


@pytest.fixture
def on_stack(simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path
             ) -> OnStack:
    """Runs the decorated scenario on a fresh stack; the PIN never reaches the console."""
    def run(scenario: Scenario) -> None:
        run_on_stack(tmp_path, manufacturer, simulated_card, scenario, secrets=(PIN,))
    return run


async def _create_with_the_page(stack: Stack, page: Page, title: str) -> dict[str, Any]:
    """The requester page: token, two PDFs, two signers in order, B-LT."""
    await steps.sign_in_as_requester(stack, page)
    await page.wait_for_selector("#create:not([hidden])")
    await page.fill("#title", title)
    await page.fill("#req-name", "Alice Requester")
    await page.fill("#req-email", "alice@example.test")
    # A 0-byte file is refused by name and reason, not as "a document".
    await page.set_input_files("#documents", files=[
        {"name": "empty.pdf", "mimeType": "application/pdf", "buffer": b""}])
    await page.fill("#signers .signer-row [data-field=email]", "marie@example.test")
    await page.click("#create-submit")
    await page.wait_for_selector("#create-status[data-kind='error']")
    refused = await page.text_content("#create-status") or ""
    assert "empty.pdf" in refused and "empty (0 bytes)" in refused, refused
    files: list[FilePayload] = [
        {"name": "contract.pdf", "mimeType": "application/pdf", "buffer": blank_pdf(2)},
        {"name": "annex.pdf", "mimeType": "application/pdf", "buffer": blank_pdf(1)}]
    await page.set_input_files("#documents", files=files)
    await page.click("#add-signer")
    rows = page.locator("#signers .signer-row")
    for index, (name, email, phone, lang) in enumerate([
            ("Marie Curie", "marie@example.test", PHONE, "en"),
            ("Pierre Curie", "pierre@example.test", PHONE_2, "fr")]):
        row = rows.nth(index)
        await row.locator("[data-field=name]").fill(name)
        await row.locator("[data-field=email]").fill(email)
        await row.locator("[data-field=phone]").fill(phone)
        await row.locator("[data-field=lang]").select_option(lang)
    await check_page(page)
    await page.click("#create-submit")
    await page.wait_for_selector("#detail:not([hidden])")
    await stack.shot(page, "01-requester-created")
    listed = await stack.requester("GET", "/api/v1/transactions")
    transaction: dict[str, Any] = next(t for t in listed["transactions"] if t["title"] == title)
    return transaction


async def _invite(stack: Stack, email: str) -> str:
    links = await wait_until_async(lambda: stack.smtp.links(email),
                                   f"an invitation e-mail to {email}")
    return links[-1]


async def _consent_and_accept(stack: Stack, page: Page, link: str, shots: str = "") -> None:
    await page.goto(link)
    await _ready(page)
    assert await page.get_attribute("body", "data-step") == "consent"
    await _until(page, "document.getElementById('legal-terms').textContent.length > 40")
    # The text's title is the heading above it, once (the text's own h2 is left out).
    assert await page.locator("#legal-terms h2, #legal-privacy h2").count() == 0
    if shots:
        await stack.shot(page, f"{shots}-consent")
    await page.check("#consent-privacy")
    await page.check("#consent-terms")
    await page.click("#consent-submit")
    await page.wait_for_selector("body[data-step='documents']")
    await _until(page, "[...document.querySelectorAll('#pages img')]"
                       ".some(i => i.complete && i.naturalWidth > 0)")
    if shots:
        await stack.shot(page, f"{shots}-documents")


async def _sign_refused(page: Page, otp: str, pin: str | None = None) -> str:
    """Sign with `otp` (the PIN typed again first when given): the error the page shows."""
    if pin is not None:
        await page.fill("#pin", pin)
    await page.fill("#otp", otp)
    await page.click("#sign-submit")
    return await _sign_error(page)


async def _sign_error(page: Page) -> str:
    await page.wait_for_selector("#sign-error:not([hidden])")
    await _until(page, "!document.body.dataset.busy")
    return await page.text_content("#sign-error") or ""


def test_requester_creates_first_signer_signs_second_refuses(on_stack: OnStack) -> None:
    @on_stack
    async def scenario(stack: Stack) -> None:
        context, page = await stack.page()
        transaction = await _create_with_the_page(stack, page, "Lease 2026")
        assert [s["status"] for s in transaction["signers"]] == ["invited", "waiting"]

        signer_context, signer = await stack.page()
        link = await _invite(stack, "marie@example.test")
        await _consent_and_accept(stack, signer, link, "02-signer1")
        await check_page(signer)
        await steps.accept_documents(signer)
        await steps.choose_credential(signer)
        # The chooser names the holder, the issuer's organisation, "qualified" and the
        # key in the page's words, never a raw DN or the agent's English slot label.
        choice = await signer.text_content("#certificate-choices") or ""
        assert "Marie Curie" in choice and "Qualified" in choice, choice
        assert "Signature key on the token no." in choice, choice
        assert "CN=" not in choice and "Digital Signature" not in choice, choice
        # A returning signer (a certificate on the token) skips the certificate step.
        assert await signer.get_attribute("#steps [data-step='enrolment']",
                                          "data-state") == "skipped"
        await stack.shot(signer, "03-signer1-certificate")
        code = await steps.ask_code(stack, signer, PIN)
        assert await signer.input_value("#pin") == PIN
        await signer.fill("#otp", code)
        await stack.shot(signer, "04-signer1-otp")
        await steps.submit_signature(signer)
        assert await signer.input_value("#pin") == "", "the PIN field is emptied"
        # Done: no stale "Documents accepted", where things stand, the signed documents.
        assert await signer.is_hidden("#notice")
        assert "1 of 2 signers" in (await signer.text_content("#done-state") or "")
        async with signer.expect_download() as download:
            await signer.click("#download-signed")
        assert (await download.value).suggested_filename == "signed-documents.zip"
        await stack.shot(signer, "05-signer1-done")
        await signer_context.close()
        await assert_signed_b_lt(stack, transaction)

        second_context, second = await stack.page()
        link = await _invite(stack, "pierre@example.test")
        await _consent_and_accept(stack, second, link, "06-signer2")
        assert await second.evaluate("document.documentElement.lang") == "fr"
        await second.click("#refuse-open")
        await second.fill("#refuse-reason", "Le loyer ne correspond pas à notre accord.")
        await stack.shot(second, "07-signer2-refusing")
        await second.click("#refuse-submit")
        await second.wait_for_selector("body[data-step='refused']")
        assert "Le loyer" in (await second.text_content("#refused-reason") or "")
        await stack.shot(second, "08-signer2-refused")
        await second_context.close()

        await page.click("#refresh")
        await page.wait_for_selector("#detail-signers [data-signer] .badge[data-status='refused']")
        text = await page.text_content("#detail-signers") or ""
        assert "Signed" in text and "Le loyer" in text
        await stack.shot(page, "09-requester-statuses")
        final = await stack.requester("GET", f"/api/v1/transactions/{transaction['id']}")
        assert [s["status"] for s in final["signers"]] == ["signed", "refused"]
        assert final["signers"][1]["refusalReason"].startswith("Le loyer")
        await context.close()


def test_failure_paths_in_the_signer_page(on_stack: OnStack,
                                          simulated_card: RunningCard) -> None:
    def _remove(stack: Stack) -> None:
        simulated_card.stop()

    @on_stack
    async def scenario(stack: Stack) -> None:
        transaction = await stack.one_signer_transaction(
            "Failure paths", requester=("Alice", "a@example.test"))
        link = stack.invitation(transaction)
        context, page = await stack.page()

        # A tampered link: one character of the MAC changed, away from its end (the last
        # base64url character carries 2 padding bits: changing it may keep the bytes).
        middle = len(link) - 10
        tampered = link[:middle] + ("A" if link[middle] != "A" else "B") + link[middle + 1:]
        await page.goto(tampered)
        await _ready(page)
        assert await page.get_attribute("body", "data-error") == "LINK_INVALID"
        assert "not valid" in (await page.text_content("#fatal") or "")
        await stack.shot(page, "10-tampered-link")

        await _consent_and_accept(stack, page, link)
        await steps.accept_documents(page)
        # After acceptance: no download button, and the API refuses with a clear sentence.
        assert await page.is_hidden("#download-one")
        doc = transaction["documents"][0]["id"]
        refused = await page.evaluate("""async (path) => {
            const m = await import('/static/api.js');
            try { await m.api('GET', path, {blob: true}); return null; }
            catch (e) { return [e.code, m.explain(e)]; } }""",
            f"{link.replace(stack.origin + '/s/', '/api/s/')}/documents/{doc}/download")
        assert refused is not None and refused[0] == "ALREADY_ACCEPTED"
        assert "can no longer be downloaded" in refused[1]

        await steps.choose_credential(page)
        # A wrong SMS code: refused before the PIN is tried.
        first = await steps.ask_code(stack, page, PIN)
        message = await _sign_refused(page, "000000" if first != "000000" else "111111")
        assert re.search(r"Wrong (SMS )?code", message), message
        await stack.shot(page, "11-wrong-otp")

        # The right code, too late (the portal's clock moves 6 minutes on): expired.
        stack.clock.advance(minutes=6)
        message = await _sign_refused(page, first, PIN)
        assert "expired" in message, message
        await stack.shot(page, "12-expired-otp")

        # A wrong PIN with a good code: tries left shown; that code is then used up.
        code = await steps.ask_code(stack, page, "000000")
        message = await _sign_refused(page, code)
        assert re.search(r"Wrong PIN, \d+ tries left", message), message
        assert await page.input_value("#pin") == ""
        await stack.shot(page, "13-wrong-pin")

        # The same code again: replayed.
        message = await _sign_refused(page, code, PIN)
        assert "already used" in message, message
        await stack.shot(page, "14-replayed-otp")

        # The card removed while signing: the page says so, nothing is stored.
        await steps.ask_code(stack, page, PIN)
        stack_card_stop = asyncio.to_thread(_remove, stack)
        await stack_card_stop
        message = await _sign_error(page)
        assert "removed" in message, message
        await stack.shot(page, "15-card-removed")
        after = await stack.requester("GET", f"/api/v1/transactions/{transaction['id']}")
        assert after["signers"][0]["status"] != "signed"
        assert after["documents"][0]["sha256"] == transaction["documents"][0]["sha256"]
        await context.close()


def test_pages_at_375_and_1280_px_have_labels_and_no_horizontal_scroll(
        on_stack: OnStack) -> None:
    @on_stack
    async def scenario(stack: Stack) -> None:
        transaction = await stack.one_signer_transaction(
            "A rather long title to see that it wraps on a narrow phone screen",
            requester=("Alice", "a@example.test"),
            document="a-document-with-a-very-long-file-name-indeed.pdf", lang=None)
        link = stack.invitation(transaction)
        for width in (375, 1280):
            for lang in ("en", "fr"):
                context, page = await stack.page(width=width)
                for path in ("/", "/requester", "/outbox", "/me/not-a-real-space"):
                    await page.goto(f"{stack.origin}{path}?lang={lang}")
                    await _ready(page)
                    await check_page(page)
                await steps.sign_in_as_requester(stack, page, lang)
                await steps.open_transaction(page)
                await check_page(page)
                await stack.shot(page, f"20-requester-{width}-{lang}")
                await page.goto(f"{link}?lang={lang}")
                await _ready(page)
                await check_page(page)
                await stack.shot(page, f"21-signer-{width}-{lang}")
                await context.close()
        # The sign step on a phone in French: every word of the chooser translated.
        context, page = await stack.page(width=375)
        await _consent_and_accept(stack, page, f"{link}?lang=fr")
        await steps.accept_documents(page)
        await steps.choose_credential(page)
        text = await page.text_content("#step-sign") or ""
        assert "Clé de signature sur le support n°" in text and "Qualifié" in text, text
        assert "Digital Signature" not in text and "Issued by" not in text, text
        await check_page(page)
        await stack.shot(page, "22-signer-sign-375-fr")
        await context.close()


def test_expired_invitation_and_blocked_pin(on_stack: OnStack,
                                            simulated_card: RunningCard) -> None:
    @on_stack
    async def scenario(stack: Stack) -> None:
        transaction = await stack.one_signer_transaction(
            "Blocked", requester=("Alice", "a@example.test"))
        signer_id = transaction["signers"][0]["id"]
        context, page = await stack.page()

        # A link signed with the portal's own key, whose expiry has passed.
        expired = LinkSigner.from_state(stack.state_dir).make(
            Purpose.INVITE, signer_id, generation=0, expires_at=int(time.time()) - 60)
        await page.goto(f"{stack.origin}/s/{expired}")
        await _ready(page)
        assert await page.get_attribute("body", "data-error") == "LINK_EXPIRED"
        assert "expired" in (await page.text_content("#fatal") or "")
        await stack.shot(page, "30-expired-invitation")

        # The card's PIN blocked outside the page (wrong PINs until 6983).
        await asyncio.to_thread(_block_pin, simulated_card)
        await _consent_and_accept(stack, page, stack.invitation(transaction))
        await steps.accept_documents(page)
        await steps.choose_credential(page)
        message = await _sign_refused(page, await steps.ask_code(stack, page, PIN))
        assert "blocked" in message, message
        await stack.shot(page, "31-pin-blocked")
        # With the PIN blocked, the page sends nothing more to that token.
        await page.fill("#pin", PIN)
        await page.click("#send-otp")
        assert "blocked" in (await _sign_error(page))
        await context.close()


def _block_pin(card: RunningCard) -> None:
    connection = connect(card.reader)
    try:
        token = PivToken(PyscardConnection(connection))
        for _ in range(10):
            try:
                token.verify_pin("00000000")
            except InvalidPin:
                continue
            except PinBlocked:
                return
        raise AssertionError("the PIN never blocked")
    finally:
        connection.disconnect()


def test_personal_space_after_everyone_signed(on_stack: OnStack) -> None:
    """One signer signs in the page; the completion e-mail's link opens Personal Space
    with an SMS code: the signed documents and the 5-year qualified certificate."""
    @on_stack
    async def scenario(stack: Stack) -> None:
        await stack.one_signer_transaction("Single", level="B-LT")
        context, page = await stack.page()
        await _consent_and_accept(stack, page, await _invite(stack, "marie@example.test"))
        await steps.accept_documents(page)
        await steps.choose_credential(page)
        code = await steps.ask_code(stack, page, PIN)
        await page.fill("#otp", code)
        await page.click("#sign-submit")
        await page.wait_for_selector("body[data-step='done']")
        assert "Everyone has signed" in (await page.text_content("#done-state") or "")
        # The requester's completion mail opens the transaction in the requester's page.
        opened = await _invite_kind(stack, "r@example.test", "/requester?tx=")
        requester_context, requester = await stack.page()
        await requester.goto(opened)
        await _ready(requester)
        await requester.fill("#token", stack.token)
        await requester.click("#token-submit")
        await requester.wait_for_selector("#detail:not([hidden])")
        assert "Single" in (await requester.text_content("#detail") or "")
        await requester_context.close()
        space = await _invite_kind(stack, "marie@example.test", "/me/")
        await steps.open_personal_space(stack, page, space, PHONE,
                                  login_shot="10-personal-space-login")
        await _until(page, "document.querySelectorAll('#documents li, #documents tr, "
                           "#documents article').length > 0")
        await check_page(page)
        await stack.shot(page, "11-personal-space")
        text = await page.text_content("#space") or ""
        assert "one.pdf" in text and "Single" in text
        certificates = await page.text_content("#certificates") or ""
        assert "Marie" in certificates or "Curie" in certificates, certificates
        years = sorted(int(y) for y in re.findall(r"(?<!\d)(20\d\d)(?!\d)", certificates))
        assert years and years[-1] - years[0] == 5, certificates  # 5-year validity
        await context.close()


async def _invite_kind(stack: Stack, email: str, kind: str) -> str:
    links = await wait_until_async(lambda: stack.smtp.links(email, kind),
                                   f"a {kind} link mailed to {email}")
    return links[-1]
