"""Break 7 of issue 13 in a real browser (tests/support/portal_e2e.py's stack): the card
holds Marie Curie's qualified certificate and Pierre Curie opens his invitation with it.
The signer page names whose certificate it is, lists it as not usable, and offers the
enrolment instead of a signature (SECURITY #39)."""

from __future__ import annotations

from pathlib import Path

from firmware_sim.attestation import Manufacturer
from tests.support.pcsc import RunningCard
from tests.support.portal_e2e import PHONE_2, Stack, check_page, ready, run_on_stack, until


def test_the_page_names_whose_certificate_the_token_holds(
        simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path) -> None:
    async def scenario(stack: Stack) -> None:
        transaction = await stack.one_signer_transaction(
            "Not his card", "Pierre Curie", "pierre@example.test", PHONE_2, level="B-B")
        context, page = await stack.page()
        await page.goto(transaction["signers"][0]["inviteUrl"] + "?lang=en")
        await ready(page)
        await page.check("#consent-privacy")
        await page.check("#consent-terms")
        await page.click("#consent-submit")
        await page.wait_for_selector("body[data-step='documents']")
        # At the documents step: whose certificate it is, and enrolment offered, not begun.
        await until(page, "document.body.dataset.firstTime === 'not-theirs'")
        text = await page.text_content("#token-check") or ""
        assert "Marie Curie" in text and "not to you" in text, text
        assert await page.is_visible("#enrol-start")
        assert await page.get_attribute("body", "data-step") == "documents"
        await page.click("#accept")
        await page.wait_for_selector("body[data-step='sign']")
        # At the sign step: no certificate to choose; the same words; enrolment offered.
        await until(page, "document.getElementById('agent-status').textContent"
                          ".includes('Marie Curie')")
        assert await page.locator("input[name='credential']").count() == 0
        assert await page.is_visible("#sign-enrol-start")
        listed = await page.text_content("#not-qualified-list") or ""
        assert "issued to Marie Curie, not to you" in listed, listed
        status = await page.text_content("#agent-status") or ""
        assert "no qualified certificate yet" not in status, status
        await check_page(page)
        await stack.shot(page, "not-his-certificate")
        after = await stack.requester("GET", f"/api/v1/transactions/{transaction['id']}")
        assert after["signers"][0]["status"] == "accepted"
        assert all(d["signatures"] == 0 for d in after["documents"])
        await context.close()

    run_on_stack(tmp_path, manufacturer, simulated_card, scenario)
