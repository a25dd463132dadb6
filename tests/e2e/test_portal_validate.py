"""Issue 16's acceptance in a real browser: a signer who signed through the real stack
(portal, agent, CA, simulated card; tests/support/portal_e2e.py, with the CA's demo
trusted list and the portal's seal) opens /validate, uploads the signed document and
reads that it is a qualified electronic signature, by them, at the time-stamp's time;
the sealed PDF report they download validates in turn; their Personal Space shows the
same report for the document, and so does the requester's view of the transaction."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from firmware_sim.attestation import Manufacturer
from tests.support import page_steps as steps
from tests.support.pcsc import RunningCard
from tests.support.portal_e2e import PHONE, PIN, Stack, check_page, ready, run_on_stack
from tests.support.waiting import wait_until_async


def test_a_signer_validates_their_signed_document(simulated_card: RunningCard,
                                                   manufacturer: Manufacturer,
                                                   tmp_path: Path) -> None:
    async def scenario(stack: Stack) -> None:
        tx = await stack.one_signer_transaction("Lease", level="B-LT", document="lease.pdf")
        context, page = await stack.page()
        links = await wait_until_async(lambda: stack.smtp.links("marie@example.test"),
                                       "the invitation e-mail")
        await page.goto(links[-1])
        await ready(page)
        await page.check("#consent-privacy")
        await page.check("#consent-terms")
        await page.click("#consent-submit")
        await page.wait_for_selector("body[data-step='documents']")
        await steps.accept_documents(page)
        await steps.choose_credential(page)
        await page.fill("#otp", await steps.ask_code(stack, page, PIN))
        await steps.submit_signature(page)
        signed_at = dt.datetime.now(dt.UTC)
        signed = await stack.document(tx, tx["documents"][0])

        await page.goto(f"{stack.origin}/validate?lang=en")
        await ready(page)
        await page.set_input_files("#file", files=[
            {"name": "lease.pdf", "mimeType": "application/pdf", "buffer": signed}])
        await page.click("#validate-submit")
        await page.wait_for_selector("#result:not([hidden])")
        await check_page(page)
        await stack.shot(page, "validate-result")
        [item] = await page.locator("#signatures li.signature").all()
        shown = await item.inner_text()
        assert "qualified electronic signature" in shown.lower(), shown
        assert "Marie Curie" in shown, shown
        assert "time-stamp" in shown, shown
        assert await item.get_attribute("data-indication") == "TOTAL-PASSED", shown
        # The time shown is the signature's own, as the page writes times.
        async with stack.session.post(stack.api("/api/v1/validations"), json={
                "name": "lease.pdf", "content": base64.b64encode(signed).decode()}) as reply:
            report = await reply.json()
        iso = report["signatures"][0]["signingTime"]
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
        assert abs(when - signed_at) < dt.timedelta(minutes=5), iso
        written = await page.evaluate(
            "iso => new Intl.DateTimeFormat('en-GB', {dateStyle: 'medium', "
            "timeStyle: 'short'}).format(new Date(iso))", iso)
        assert written in shown, (written, shown)

        # The sealed PDF report, as the person keeps it, validates too; it is fetched by
        # the file's SHA-256, the file is not sent (nor counted) again.
        uploads: list[str] = []
        page.on("request", lambda r: uploads.append(r.url) if r.method == "POST" else None)
        async with page.expect_download() as download:
            await page.click("#download-pdf")
        kept = Path(await (await download.value).path()).read_bytes()
        assert kept.startswith(b"%PDF-")
        assert uploads == [], uploads
        async with stack.session.post(stack.api("/api/v1/validations"), json={
                "name": "report.pdf", "content": base64.b64encode(kept).decode()}) as reply:
            sealed = await reply.json()
        [seal] = sealed["signatures"]
        assert seal["field"] == "ServiceSeal" and seal["indication"] == "TOTAL-PASSED", seal

        # Personal Space shows the same report for the signed document.
        space = await wait_until_async(lambda: stack.smtp.links("marie@example.test", "/me/"),
                                       "the Personal Space link")
        await steps.open_personal_space(stack, page, space[-1], PHONE)
        await page.click("#documents li button[aria-label*='signatures']")
        await page.wait_for_selector("#documents .validation li.signature")
        await check_page(page)
        text = await page.inner_text("#documents .validation")
        assert "qualified electronic signature" in text.lower() and written in text, text

        # So does the requester's view of the transaction.
        await steps.sign_in_as_requester(stack, page)
        await steps.open_transaction(page)
        await page.click("#detail-documents li button[aria-label*='signatures']")
        await page.wait_for_selector("#detail-documents .validation li.signature")
        text = await page.inner_text("#detail-documents .validation")
        assert "qualified electronic signature" in text.lower() and "Marie Curie" in text, text
        await context.close()

    run_on_stack(tmp_path, manufacturer, simulated_card, scenario, secrets=(PIN,))
