"""The signer's page in Chromium for a transaction whose second factor is TOTP (issue
15): the page asks for the code of the authenticator the signer enrolled for the token
in the agent (otp/enrol, after the agent's own second-factor proof), with no phone to
confirm and no SMS button; the signature completes and no SMS was sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware_sim.card import Manufacturer
from tests.support import page_steps as steps
from tests.support.pcsc import RunningCard
from tests.support.portal_e2e import PIN, Stack, check_page, ready, run_on_stack, until
from tests.support.second_factor import enrol_totp
from tests.support.waiting import wait_until_async


def test_the_signer_page_asks_the_authenticators_code(
        simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path) -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.session.ws_connect(
                f"http://127.0.0.1:{stack.agent_port}/v1/ws",
                headers={"Origin": stack.origin}) as ws:
            async def tokens() -> list[Any]:
                await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "tokens/list"})
                return list((await ws.receive_json())["result"]["tokens"])

            [token] = await wait_until_async(tokens, "the card listed by the agent")
            totp = await enrol_totp(ws, f"{token['id']}/9C", PIN, tmp_path / "agent")
        tx = await stack.one_signer_transaction("TOTP", level="B-B", secondFactor="totp")
        context, page = await stack.page()
        await page.goto(stack.invitation(tx) + "?lang=en")
        await ready(page)
        await page.check("#consent-privacy")
        await page.check("#consent-terms")
        await page.click("#consent-submit")
        await page.wait_for_selector("body[data-step='documents']")
        await steps.accept_documents(page)
        await page.wait_for_selector("input[name='credential']", state="attached")
        await page.check("input[name='credential']")
        await page.wait_for_selector("#otp-step:not([hidden])")
        assert await page.is_hidden("#send-otp") and await page.is_hidden("#phone-confirm")
        assert "authenticator" in (await page.text_content("#otp-step legend") or "")
        await check_page(page)
        await page.fill("#pin", PIN)
        await page.fill("#otp", totp.now())
        await steps.submit_signature(page)
        await until(page, "document.body.dataset.step === 'done'")
        assert (await stack.requester("GET", "/api/v1/outbox"))["sms"] == []
        await context.close()

    run_on_stack(tmp_path, manufacturer, simulated_card, scenario, secrets=(PIN,),
                 otp_mode="any")
