"""The messaging thread (portal/API.md "Messages") in both pages, in Chromium: the
requester's message reaches the signer's page and the signer's reply the requester's,
each page shows its viewer's own messages on its side, and an empty message is refused
in the page before any request."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

from firmware_sim.attestation import Manufacturer
from tests.support import page_steps as steps
from tests.support.pcsc import RunningCard
from tests.support.portal_e2e import Stack, check_page, ready, run_on_stack, until

THREAD = "[...document.querySelectorAll('#thread .message')]"


async def _thread(page: Page) -> list[tuple[str, str, str]]:
    """Each message shown: whether it is the viewer's own, its meta line, its text."""
    shown: list[tuple[str, str, str]] = await page.evaluate(
        f"() => {THREAD}.map(m => [m.dataset.mine, m.children[0].textContent,"
        " m.children[1].textContent])")
    return shown


async def _own_side(page: Page) -> list[str]:
    """Where the page puts each message: flex-end for the viewer's own."""
    sides: list[str] = await page.evaluate(
        f"() => {THREAD}.map(m => getComputedStyle(m).alignSelf)")
    return sides


def test_requester_and_signer_write_to_each_other(simulated_card: RunningCard,
                                                  manufacturer: Manufacturer,
                                                  tmp_path: Path) -> None:
    async def scenario(stack: Stack) -> None:
        transaction = await stack.one_signer_transaction("Messages", messaging=True)
        await stack.requester("POST", f"/api/v1/transactions/{transaction['id']}/messages",
                              {"text": "Bonjour, une question ?"})
        context, page = await stack.page()

        # The signer's page: the requester's message on the other side.
        await page.goto(stack.invitation(transaction) + "?lang=en")
        await ready(page)
        await until(page, f"{THREAD}.length === 1")
        [(mine, meta, text)] = await _thread(page)
        assert (mine, text) == ("false", "Bonjour, une question ?")
        assert meta.startswith("R · "), meta
        assert await page.is_hidden("#thread-empty")
        await page.click("#message-send")
        await page.wait_for_selector("#message-error:not([hidden])")
        assert await page.text_content("#message-error") == "Write a message first."
        assert len(await _thread(page)) == 1
        await page.fill("#message-text", "Oui, la page 2 ?")
        await page.click("#message-send")
        await until(page, f"{THREAD}.length === 2")
        assert [(m, t) for m, _, t in await _thread(page)] == [
            ("false", "Bonjour, une question ?"), ("true", "Oui, la page 2 ?")]
        assert (await _thread(page))[1][1].startswith("You · ")
        assert await page.input_value("#message-text") == ""
        assert await _own_side(page) == ["auto", "flex-end"]
        await check_page(page)

        # The requester's page: the same thread, seen from the other side.
        await steps.sign_in_as_requester(stack, page)
        await steps.open_transaction(page)
        await until(page, f"{THREAD}.length === 2")
        assert [(m, t) for m, _, t in await _thread(page)] == [
            ("true", "Bonjour, une question ?"), ("false", "Oui, la page 2 ?")]
        assert (await _thread(page))[1][1].startswith("Marie Curie · ")
        assert await _own_side(page) == ["flex-end", "auto"]
        await page.click("#reply-send")
        await until(page, "document.getElementById('detail-error').textContent"
                          " === 'Write a message first.'")
        await page.fill("#reply-text", "Oui.")
        await page.click("#reply-send")
        await until(page, f"{THREAD}.length === 3")
        assert (await _thread(page))[2][0] == "true"
        await check_page(page)
        await context.close()
        after = await stack.requester(
            "GET", f"/api/v1/transactions/{transaction['id']}/messages")
        assert [m["text"] for m in after["messages"]] == [
            "Bonjour, une question ?", "Oui, la page 2 ?", "Oui."]

    run_on_stack(tmp_path, manufacturer, simulated_card, scenario)
