"""Issue 7 in a real browser: a first-time signer on a factory-fresh simulated card (no
key, factory PIN) walks every enrolment step of the signer page (portal/web/enrolment.js,
capture.js) in headless Chromium, then the document steps, to PDFs that validate with
pyHanko as PAdES B-LT under the certificate the CA has just issued to the card.

Chromium's fake camera (tests/support/fake_camera.py) films a specimen ID card's back,
so the back is photographed with the camera, and the document's person doing what each
video instruction asks (tests/support/selfie_e2e.py); the other sides are uploaded as
files, one of them from the phone page the QR code leads to.

The failure paths of issue 7 are walked in the same journey, on the same stack: data
declared wrong then corrected (a new link), a bad MRZ check digit, an expired document,
front and back of different cards, a document of another person (identity mismatch),
a late liveness answer (the portal's clock moves on), a PIN typed before the token's
SMS code (issue 13: no PIN reaches the token before a second factor) and a wrong code,
PINs that differ or are not 4-8 digits, a wrong factory PIN, a reload at the
certificate request (a new agent connection: a new code), the card removed during key
generation and the CA refusing (it does not trust the identity service); each retry
resumes, and at the end the card's slot holds one key and the CA issued one
certificate."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import re
import shutil
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from PIL import Image
from playwright.async_api import FilePayload, Page

from agent.tokens.piv import PivToken
from firmware_sim.attestation import Manufacturer
from portal.identity import specimen
from portal.identity.mrz import DocumentFormat
from tests.support import page_steps as steps
from tests.support.fake_camera import FakeCamera
from tests.support.identity_fixtures import make_specimen, selfie
from tests.support.pcsc import RunningCard, connect
from tests.support.portal_e2e import (
    PHONE,
    Stack,
    assert_signed_b_lt,
    check_page,
    portal_stack,
)
from tests.support.portal_e2e import (
    ready as _ready,
)
from tests.support.portal_e2e import (
    until as _until,
)
from tests.support.provision import PyscardConnection
from tests.support.selfie_e2e import (
    api,
    doing,
    identity_session,
    idle,
    perform,
    perform_as_holder,
)
from tests.support.selfies import noisy
from tests.support.waiting import wait_until_async

FACTORY_PIN = "123456"  # the simulated card's default, as in the token's letter
NEW_PIN = "2468"
PHONE_FIXED = "+33611223344"
SEED = 7  # the card whose back the fake camera shows


# ---------------------------------------------------------------------- test data

def _png(data: bytes, name: str) -> FilePayload:
    return {"name": name, "mimeType": "image/png", "buffer": data}


# ---------------------------------------------------------------------- page helpers

async def _idle(page: Page) -> None:
    await _until(page, "!document.body.dataset.busy && ![...document.querySelectorAll("
                       "'#capture, #phone-capture')].some(c => c.dataset.busy)")


async def _sub(page: Page, step: str) -> None:
    await page.wait_for_selector(f"body[data-enrolment='{step}']", timeout=60000)


async def _error(page: Page, selector: str = "#enrol-error") -> str:
    await page.wait_for_selector(f"{selector}:not([hidden])", timeout=60000)
    await _idle(page)
    return await page.text_content(selector) or ""


async def _look(stack: Stack, page: Page, name: str, french: bool = False) -> None:
    """Labels, no horizontal scroll and no raw key, at 1280 and 375 px (and in French);
    a screenshot of each."""
    await check_page(page)
    await stack.shot(page, name)
    await page.set_viewport_size({"width": 375, "height": 800})
    await check_page(page)
    await stack.shot(page, f"{name}-375")
    if french:
        await page.select_option("#lang-switch", "fr")
        await _until(page, "document.documentElement.lang === 'fr'")
        await page.wait_for_load_state("networkidle")  # legal texts fetched and shown
        await check_page(page)
        await stack.shot(page, f"{name}-375-fr")
        await page.select_option("#lang-switch", "en")
        await _until(page, "document.documentElement.lang === 'en'")
        await page.wait_for_load_state("networkidle")
    await page.set_viewport_size({"width": 1280, "height": 900})


async def _side(page: Page, side: str, image: bytes, name: str) -> str:
    """Upload one side; the side's result as shown."""
    await _idle(page)
    await page.set_input_files(f"#file-{side}", files=[_png(image, name)])
    await _until(page, f"['ok', 'error'].includes(document.getElementById('result-{side}')"
                       "?.dataset.kind)", tries=2400)
    await _idle(page)
    return await page.text_content(f"#result-{side}") or ""


async def _open_identity(page: Page, document: str) -> None:
    await page.check(f"#doc-{document}")
    await page.click("#document-start")
    await page.wait_for_selector("#capture[data-identity-step='document']")


async def _fill_pins(page: Page, old: str, new: str) -> None:
    await page.fill("#puk" if await page.is_visible("#puk") else "#old-pin", old)
    await page.fill("#new-pin", new)
    await page.fill("#new-pin-2", new)


async def _send_code(stack: Stack, page: Page, box: str, phone: str = PHONE_FIXED) -> str:
    """Ask for the token's SMS code in the `box` ("pin" or "cert") of the page; the code,
    as the phone (the portal's outbox) received it."""
    before = await stack.sms_count(phone)
    await page.click(f"#{box}-send-code")
    await page.wait_for_selector(f"#{box}-code-entry:not([hidden])")
    sent = await page.text_content(f"#{box}-code-sent") or ""
    assert "sent to" in sent and phone[-2:] in sent and phone not in sent, sent
    assert await page.text_content(f"#{box}-send-code") == "Send a new code"
    return await stack.sms_code(phone, before)


def _another(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# ---------------------------------------------------------------------- the card and CA

def _card_keys(card: RunningCard) -> dict[str, bytes | None]:
    """Slot -> the SPKI of the key the card attests there (None: no key)."""
    connection = connect(card.reader)
    try:
        token = PivToken(PyscardConnection(connection))
        keys: dict[str, bytes | None] = {}
        for slot in ("9A", "9C", "9D", "9E"):
            try:
                attestation = token.attest(slot)[0]
            except Exception:  # no key in the slot: the card refuses to attest
                keys[slot] = None
                continue
            keys[slot] = asn1_x509.Certificate.load(attestation).public_key.dump()
        certificate = next((c.certificate for c in token.credentials()
                            if c.id == "9C" and c.certificate), None)
        keys["cert9C"] = certificate
        return keys
    finally:
        connection.disconnect()


def _portal_identity_trust(stack: Stack) -> Path:
    """The CA's trust file for the portal's identity service."""
    assert stack.identity_pem is not None
    wanted = x509.load_pem_x509_certificate(stack.identity_pem.read_bytes())
    for path in (stack.ca.directory / "trust" / "identity").glob("*.pem"):
        if x509.load_pem_x509_certificate(path.read_bytes()) == wanted:
            return path
    raise AssertionError("the CA does not trust the portal's identity service")


async def _agent_sees_token(page: Page, port: int) -> None:
    async def count() -> int:
        found: int = await page.evaluate("""async (port) => {
            const q = await import(`http://127.0.0.1:${port}/v1/qsign.js`);
            const c = await q.connect({port});
            try { return (await c.listTokens()).tokens.length; } finally { c.close && c.close(); }
        }""", port)
        return found

    await wait_until_async(count, "the agent to see the card again", interval=0.1)


# ---------------------------------------------------------------------- the journey

def test_first_time_signer_enrols_in_the_browser_then_signs(
        simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path) -> None:
    marie = make_specimen(DocumentFormat.TD1, surname="Curie", given_names="Marie",
                          seed=SEED)
    camera = FakeCamera(tmp_path / "camera.y4m", size=(1280, 960))
    camera.show(idle())

    async def main() -> None:
        async with portal_stack(tmp_path, manufacturer, simulated_card, enrol=False,
                                browser_args=camera.flags) as stack:
            pages: list[Page] = []
            try:
                await _journey(stack, simulated_card, marie, pages, camera)
            except BaseException:
                print("browser console:\n" + "\n".join(stack.console))
                for index, open_page in enumerate(pages):
                    if not open_page.is_closed():
                        await stack.shot(open_page, f"zz-failure-{index}")
                        print(f"page {index}: {open_page.url}\n"
                              + await open_page.evaluate("() => JSON.stringify("
                                                         "document.body.dataset)"))
                raise
            console = "\n".join(stack.console)
            for secret in (FACTORY_PIN, NEW_PIN):
                assert secret not in console, "a PIN reached the console"
            assert not [c for c in stack.console if c.startswith("pageerror")], console

    asyncio.run(main())


async def _enrol_from_the_sign_step(stack: Stack, pages: list[Page]) -> None:
    """A signer who accepted the documents before inserting a token with no qualified
    certificate: the sign step offers the enrolment, which starts at personal data."""
    transaction = await stack.one_signer_transaction(
        "Late discovery", "Paul Martin", "paul@example.test", PHONE)
    invite = transaction["signers"][0]["inviteUrl"].rsplit("/s/", 1)[1]
    async with stack.session.get(stack.api(f"/api/s/{invite}")) as response:
        view = await response.json()
    accepted = [{k: c[k] for k in ("kind", "version", "sha256")} for c in view["consents"]]
    for path, body in ((f"/api/s/{invite}/consents", {"accepted": accepted}),
                       (f"/api/s/{invite}/accept", {})):
        async with stack.session.post(stack.api(path), json=body) as response:
            assert response.status == 200, await response.text()
    context, page = await stack.page()
    pages.append(page)
    await page.goto(f"{stack.origin}/s/{invite}")
    await _ready(page)
    assert await page.get_attribute("body", "data-step") == "sign"
    await page.wait_for_selector("#sign-enrol-actions:not([hidden])", timeout=60000)
    assert "no qualified certificate" in (await page.text_content("#agent-status") or "")
    await check_page(page)
    await stack.shot(page, "00-sign-step-offers-enrolment")
    await page.click("#sign-enrol-start")
    await page.wait_for_selector("body[data-step='enrolment']")
    await _sub(page, "personal-data")
    await context.close()


async def _journey(stack: Stack, card: RunningCard, marie: specimen.Specimen,
                   pages: list[Page], camera: FakeCamera) -> None:
    assert _card_keys(card)["9C"] is None  # factory-fresh
    issued_before = stack.ca.issued()  # the portal's validation seal, made at set-up
    await _enrol_from_the_sign_step(stack, pages)
    # A typo in the surname: the signer corrects it.
    transaction = await stack.one_signer_transaction(
        "Employment contract", "Marie Curi", "marie@example.test", PHONE,
        requester=("Agence Dupont", "agence@example.test"), document="contract.pdf", pages=2,
        level="B-LT", messaging=True)
    link = stack.invitation(transaction)
    context, page = await stack.page()
    pages.append(page)

    # Consent, then the page asks the agent: no qualified certificate -> enrolment.
    await page.goto(link)
    await _ready(page)
    await _until(page, "document.getElementById('legal-terms').textContent.length > 40")
    await page.check("#consent-privacy")
    await page.check("#consent-terms")
    await page.click("#consent-submit")
    await page.wait_for_selector("body[data-step='enrolment']", timeout=60000)
    assert await page.get_attribute("body", "data-first-time") == "yes"
    await _sub(page, "personal-data")
    assert "Marie Curi" in (await page.text_content("#enrol-personal-data") or "")
    await _look(stack, page, "01-personal-data", french=True)

    # 1. The data are wrong: corrected, the requester told, a new link.
    await page.click("#pd-no")
    await page.fill("#pd-name-input", "Marie Curie")
    await page.fill("#pd-phone-input", "+33 6 11 22 33 44")
    await stack.shot(page, "02-personal-data-correcting")
    await page.click("#pd-save")
    await page.wait_for_url(re.compile(r".*corrected=1.*"))
    await _ready(page)
    await _sub(page, "issuance-consents")  # corrected data need no second confirmation
    assert page.url.split("?")[0] != link.split("?")[0]
    assert "Marie Curie" in (await page.text_content("#tx-meta") or "")
    assert "corrected" in (await page.text_content("#notice") or "")
    async with stack.session.get(stack.api(
            f"/api/s/{link.rsplit('/s/', 1)[1]}")) as revoked:
        assert revoked.status == 410
        assert (await revoked.json())["error"] == "LINK_REVOKED"
    messages = await stack.requester("GET",
                                     f"/api/v1/transactions/{transaction['id']}/messages")
    assert any("Marie Curie" in m["text"] for m in messages["messages"]) or any(
        "marie" in "".join(mail.to) for mail in stack.smtp.mails), "requester not told"
    await stack.shot(page, "03-personal-data-corrected")

    # 2. Issuance and Personal Space consents, texts shown.
    await _until(page, "document.getElementById('legal-space').textContent.length > 40 && "
                       "document.getElementById('legal-issuance').textContent.length > 40")
    await page.click("#enrol-consents-submit")
    assert "tick both" in await _error(page)
    await page.check("#consent-issuance")
    await page.check("#consent-space")
    await _look(stack, page, "04-issuance-consents", french=True)
    await page.click("#enrol-consents-submit")

    # 3. Identity: an ID card, whose sides fail in three ways first.
    await _sub(page, "identity")
    await _look(stack, page, "05-identity-choose")
    await _open_identity(page, "id-card")
    await _look(stack, page, "06-identity-sides")
    bad = make_specimen(DocumentFormat.TD1, surname="Curie", given_names="Marie",
                        defect=specimen.Defect.BAD_CHECK_DIGIT, seed=11)
    shown = await _side(page, "back", bad.images[specimen.Side.BACK], "back.png")
    assert "check digits" in shown, shown
    await stack.shot(page, "07-bad-check-digit")
    expired = make_specimen(DocumentFormat.TD1, surname="Curie", given_names="Marie",
                            defect=specimen.Defect.EXPIRED, seed=12)
    shown = await _side(page, "back", expired.images[specimen.Side.BACK], "back.png")
    assert "expired" in shown, shown
    await stack.shot(page, "08-expired")
    mixed = make_specimen(DocumentFormat.TD1, surname="Curie", given_names="Marie",
                          defect=specimen.Defect.MISMATCHED_SIDES, seed=13)
    shown = await _side(page, "front", mixed.images[specimen.Side.FRONT], "front.png")
    assert "Verified" in shown, shown
    shown = await _side(page, "back", mixed.images[specimen.Side.BACK], "back.png")
    assert "same document" in shown, shown
    assert await page.get_attribute("#result-front", "data-kind") != "ok"  # both again
    await stack.shot(page, "09-sides-mismatch")

    # Another person's passport: verified, but it is not Marie (identity mismatch), and
    # the first video instruction is answered late.
    await page.click("#identity-restart")
    await _open_identity(page, "passport")
    pierre = make_specimen(DocumentFormat.TD3, surname="Durand", given_names="Pierre",
                           sex="M", seed=14)
    shown = await _side(page, "data-page", pierre.images[specimen.Side.DATA_PAGE],
                        "passport.png")
    assert "Verified" in shown, shown
    await page.wait_for_selector("#liveness:not([hidden])")
    await _look(stack, page, "10-liveness-intro")
    assert await perform(page, camera, doing("astronaut"),
                         late=lambda: stack.clock.advance(seconds=60)) == "CHALLENGE_LATE"
    late = await page.text_content("#liveness-error") or ""
    assert "Too late" in late, late
    await stack.shot(page, "11-liveness-late")
    assert await perform_as_holder(page, camera, doing("astronaut")) is None
    await _sub(page, "identity-confirm")
    assert await page.locator("#compare tr.diff").count() >= 1
    assert "Durand" in (await page.text_content("#compare") or "")
    await _look(stack, page, "12-identity-mismatch", french=True)
    await page.click("#confirm-yes")
    assert "someone other" in await _error(page)
    await stack.shot(page, "13-identity-mismatch-refused")
    await page.click("#confirm-no")
    await _sub(page, "identity")

    # Marie's own card: the front from the phone (QR code), the back with the computer's
    # camera, the video check on the phone; each page follows the other.
    await page.wait_for_selector("#document-form:not([hidden])")
    await _open_identity(page, "id-card")
    await page.click("#handoff-open")
    await page.wait_for_selector("#handoff-qr")
    assert await page.evaluate("() => document.getElementById('handoff-qr').naturalWidth"
                               " > 0")
    phone_url = await page.get_attribute("#handoff-url", "href") or ""
    assert "/id/" in phone_url
    await stack.shot(page, "14-handoff-qr")
    phone_context, phone = await stack.page(width=375, height=800)
    pages.append(phone)
    await phone.goto(phone_url)
    await _ready(phone)
    await check_page(phone)
    shown = await _side(phone, "front", marie.images[specimen.Side.FRONT], "front.png")
    assert "Verified" in shown, shown
    await stack.shot(phone, "15-phone-front")
    await _until(page, "document.getElementById('result-front')?.dataset.kind === 'ok'",
                 tries=2400)  # the computer's page followed the phone
    back = Image.open(io.BytesIO(marie.images[specimen.Side.BACK])).convert("RGB")
    rng = random.Random(SEED)
    camera.show([noisy(back, rng) for _ in range(camera.frames)])
    await page.click("#camera-back")
    await page.wait_for_selector("#camera-panel:not([hidden])")
    await _until(page, "document.getElementById('camera-video').videoWidth > 0")
    await _look(stack, page, "16-camera-back")
    await page.click("#camera-shoot")
    await _until(page, "['ok', 'error'].includes(document.getElementById('result-back')"
                       "?.dataset.kind) || document.getElementById('capture').dataset"
                       ".identityStep === 'liveness'", tries=2400)
    await _idle(page)
    assert await page.evaluate(
        "() => document.getElementById('capture').dataset.identityStep") == "liveness", \
        await page.text_content("#capture")
    await phone.wait_for_selector("#liveness:not([hidden])", timeout=30000)
    await check_page(phone)
    camera.show(idle())
    assert await perform_as_holder(phone, camera, doing("astronaut"),
                                   capture="phone-capture") is None
    await phone.wait_for_selector("#phone-done:not([hidden])")
    await stack.shot(phone, "16b-phone-verified")
    await phone_context.close()
    await _sub(page, "identity-confirm")
    assert await page.locator("#compare tr.diff").count() == 0
    assert "Curie" in (await page.text_content("#compare") or "")
    await _look(stack, page, "17-identity-confirm")
    await page.click("#confirm-yes")

    # 4. Names and phone for the certificate.
    await _sub(page, "auth-data")
    for box in await page.locator("#given-choices input").all():
        await box.uncheck()
    await page.click("#auth-submit")
    assert "at least one given name" in await _error(page)
    await page.check("#given-choices input >> nth=0")
    await page.fill("#auth-phone", PHONE_FIXED)
    await _look(stack, page, "18-auth-data", french=True)
    await page.click("#auth-submit")

    # 5. The PIN: first the SMS code for the token (no PIN reaches it before), then
    # differing, too short, not digits, the letter's PIN wrong, then right.
    await _sub(page, "pin")
    await _until(page, "document.getElementById('pin-token').textContent.includes('PIV')")
    await _look(stack, page, "19-pin")
    await _fill_pins(page, FACTORY_PIN, NEW_PIN)
    await page.click("#pin-submit")
    assert "First ask for the SMS code" in await _error(page)
    code = await _send_code(stack, page, "pin")
    await _look(stack, page, "19b-pin-code", french=True)
    await page.fill("#pin-otp", _another(code))
    await _fill_pins(page, FACTORY_PIN, NEW_PIN)
    await page.click("#pin-submit")
    wrong = await _error(page)
    assert "Wrong code" in wrong and "code and your PIN again" in wrong, wrong
    assert await page.input_value("#old-pin") == ""
    stack.clock.advance(seconds=2)  # the portal's delay after a wrong code
    await page.fill("#pin-otp", code)
    for old, new, again, expected in (
            (FACTORY_PIN, "1234", "1235", "not the same"),
            (FACTORY_PIN, "12", "12", "4 to 8 digits"),
            (FACTORY_PIN, "12ab", "12ab", "4 to 8 digits"),
            ("000000", NEW_PIN, NEW_PIN, "Wrong PIN")):
        await page.fill("#old-pin", old)
        await page.fill("#new-pin", new)
        await page.fill("#new-pin-2", again)
        await page.click("#pin-submit")
        message = await _error(page)
        assert expected in message, message
        assert await page.input_value("#new-pin") == ""
    await stack.shot(page, "20-pin-wrong")
    assert await page.is_hidden("#pin-code"), "the code was spent: the token is open"
    await _fill_pins(page, FACTORY_PIN, NEW_PIN)
    await page.click("#pin-submit")
    await _sub(page, "certificate")
    for field in ("#old-pin", "#new-pin", "#new-pin-2"):
        assert await page.input_value(field) == "", "a PIN stayed in the page"

    # 6. The certificate request, then the key, evidence, CA and registration.
    request = await page.text_content("#request-facts") or ""
    for expected in ("Marie Curie", "QCP-n-qscd", "5 years", "nonRepudiation"):
        assert expected in request, request
    assert await page.is_hidden("#cert-code"), "the PIN step's code still holds"
    await _look(stack, page, "21-certificate-request", french=True)
    # A reload is a new connection to the agent: its grant is gone, a new code is asked.
    await page.reload()
    await _ready(page)
    await _sub(page, "certificate")
    await page.check("#request-accept")
    await page.wait_for_selector("#cert-code:not([hidden])")
    await page.fill("#enrol-pin-input", NEW_PIN)
    await page.click("#request-submit")
    assert "First ask for the SMS code" in await _error(page)
    stack.clock.advance(seconds=31)  # one code per 30 s to a phone
    await page.fill("#cert-otp", await _send_code(stack, page, "cert"))
    await _look(stack, page, "21b-certificate-code")

    # The card pulled out while the key is being made.
    card.control("latency 400")
    await page.fill("#enrol-pin-input", NEW_PIN)
    await page.click("#request-submit")
    await page.wait_for_selector("body[data-enrol-call='enroll/generate']")
    start = int(card.control("status")["apdus"])  # type: ignore[call-overload]
    # Pulled once the card has begun the key's commands (PIN, key generation): a key may
    # already be in the slot, and the agent has not recorded it.
    await wait_until_async(
        lambda: int(card.control("status")["apdus"]) >= start + 2,  # type: ignore[call-overload]
        "the card to begin the key's commands", interval=0.02)
    await asyncio.to_thread(card.remove)
    removed = await _error(page)
    # TOKEN_REMOVED (or TOKEN_NOT_FOUND when the agent already saw the reader empty).
    assert re.search(r"removed|not found", removed), removed
    assert await page.get_attribute("body", "data-enrol-failed") == "generate"
    await page.wait_for_selector("#enrol-retry:not([hidden])")
    await stack.shot(page, "22-card-removed")
    card.control("latency 0")
    await asyncio.to_thread(card.insert)
    await _agent_sees_token(page, stack.agent_port)

    # The CA refuses: it no longer trusts the portal's identity service.
    trust = _portal_identity_trust(stack)
    parked = stack.state_dir.parent / "parked-identity.pem"
    shutil.move(trust, parked)
    await asyncio.to_thread(stack.ca.restart)
    await page.fill("#enrol-pin-input", NEW_PIN)
    await page.click("#enrol-retry")
    refused = await _error(page)
    assert "does not trust the service that verified your identity" in refused, refused
    assert await page.get_attribute("body", "data-enrol-failed") == "complete"
    await stack.shot(page, "23-ca-refused")
    shutil.move(parked, trust)
    await asyncio.to_thread(stack.ca.restart)

    # The retry resumes at the CA (no PIN asked): the same key, one certificate.
    await page.click("#enrol-retry")
    await page.wait_for_selector("body[data-step='documents']", timeout=60000)
    await _until(page, "document.getElementById('notice').textContent.includes('valid until')")
    await stack.shot(page, "24-certificate-issued")
    keys = await asyncio.to_thread(_card_keys, card)
    assert keys["9C"] is not None and keys["cert9C"] is not None
    issued = asn1_x509.Certificate.load(keys["cert9C"])
    assert issued.public_key.dump() == keys["9C"], "the certificate is not for the slot's key"
    assert [s for s in ("9A", "9D", "9E") if keys[s] is not None] == []
    assert stack.ca.issued() == issued_before + 1, "the CA issued more than one certificate"
    subject = issued.subject.native
    assert (subject["given_name"], subject["surname"]) == ("Marie", "Curie")

    # The documents, signed with the new PIN and an SMS code to the chosen phone.
    await _until(page, "[...document.querySelectorAll('#pages img')]"
                       ".some(i => i.complete && i.naturalWidth > 0)")
    await steps.accept_documents(page)
    await steps.choose_credential(page, timeout=60000)
    await page.fill("#otp", await steps.ask_code(stack, page, NEW_PIN, PHONE_FIXED))
    await stack.shot(page, "25-sign")
    await steps.submit_signature(page)
    await stack.shot(page, "26-signed")
    await context.close()
    await assert_signed_b_lt(stack, transaction, keys["cert9C"])
    await _personal_space_lists(stack, pages, issued)


async def _personal_space_lists(stack: Stack, pages: list[Page],
                                issued: asn1_x509.Certificate) -> None:
    """The completion e-mail's Personal Space link, opened with an SMS code to the
    phone chosen at enrolment, lists the new certificate (5 years)."""
    found = await wait_until_async(lambda: stack.smtp.links("marie@example.test", "/me/"),
                                   "the Personal Space link in the mail", interval=0.1)
    space = found[-1]
    context, page = await stack.page()
    pages.append(page)
    await steps.open_personal_space(stack, page, space, PHONE_FIXED)
    await _until(page, "document.getElementById('certificates').textContent"
                       ".includes('Curie')")
    text = await page.text_content("#certificates") or ""
    assert f"{issued.serial_number:x}".upper() in text.upper() or "Marie" in text, text
    # Not inside the hexadecimal serial number (a serial "...ee2033fe..." once read as a year).
    years = sorted(int(y) for y in re.findall(r"(?<![0-9A-Fa-f])(20\d\d)(?![0-9A-Fa-f])", text))
    assert years and years[-1] - years[0] == 5, text
    await stack.shot(page, "27-personal-space")
    await context.close()


# ---------------------------------------------------------------------- a blocked PIN

async def _to_the_pin_step(stack: Stack, invite: str) -> None:
    """Consents, personal data, identity (a specimen card, timed liveness), names: what
    the journey above does in the page, here through the HTTP API."""
    card = make_specimen(DocumentFormat.TD1, surname="Martin", given_names="Paul", seed=21,
                         sex="M")
    session = await identity_session(stack, invite, card, "id-card")
    while (await api(stack, "GET", session))["step"] == "liveness":
        challenge = await api(stack, "POST", f"{session}/challenges/next", {})
        stack.clock.advance(seconds=2)  # a person takes a moment to act
        await api(stack, "POST", f"{session}/challenges/{challenge['id']}", {
            "nonce": challenge["nonce"],
            "frames": [base64.b64encode(f).decode() for f in selfie(challenge["action"])]})
    base = f"/api/s/{invite}"
    await api(stack, "POST", f"{base}/enrolment/identity-done", {})
    await api(stack, "POST", f"{base}/enrolment/identity-confirm", {"correct": True})
    view = await api(stack, "POST", f"{base}/enrolment/auth-data", {
        "givenNames": "Paul", "surname": "Martin", "phone": PHONE})
    assert view["enrolment"]["step"] == "pin"


def test_a_blocked_letter_pin_is_unblocked_with_the_puk(
        simulated_card: RunningCard, manufacturer: Manufacturer, tmp_path: Path) -> None:
    """The letter's PIN mistyped until the card blocks it: the page switches to the PUK,
    a wrong PUK shows its own tries left, the right one sets the new PIN (pin/unblock);
    one SMS code for the token opens it for all of these."""
    async def main() -> None:
        async with portal_stack(tmp_path, manufacturer, simulated_card,
                                enrol=False) as stack:
            transaction = await stack.one_signer_transaction(
                "Blocked PIN", "Paul Martin", "paul@example.test", PHONE)
            invite = transaction["signers"][0]["inviteUrl"].rsplit("/s/", 1)[1]
            await _to_the_pin_step(stack, invite)
            context, page = await stack.page()
            await page.goto(f"{stack.origin}/s/{invite}")
            await _ready(page)
            await _sub(page, "pin")
            await _until(page, "document.getElementById('pin-token').textContent"
                               ".includes('PIV')")
            await page.fill("#pin-otp", await _send_code(stack, page, "pin", PHONE))
            messages = []
            for _ in range(3):
                await page.fill("#old-pin", "000000")
                await page.fill("#new-pin", NEW_PIN)
                await page.fill("#new-pin-2", NEW_PIN)
                await page.click("#pin-submit")
                messages.append(await _error(page))
            assert "2 tries left" in messages[0] and "1 try left" in messages[1], messages
            assert "blocked" in messages[2] and "PUK" in messages[2], messages
            await page.wait_for_selector("#puk-box:not([hidden])")
            assert await page.is_hidden("#old-pin-box")
            await _look(stack, page, "30-pin-blocked-puk", french=True)
            await page.fill("#puk", "87654321")
            await page.fill("#new-pin", NEW_PIN)
            await page.fill("#new-pin-2", NEW_PIN)
            await page.click("#pin-submit")
            wrong = await _error(page)
            assert "Wrong PUK, 2 tries left" in wrong, wrong
            await page.fill("#puk", "12345678")  # the simulated card's factory PUK
            await page.fill("#new-pin", NEW_PIN)
            await page.fill("#new-pin-2", NEW_PIN)
            await page.click("#pin-submit")
            await _sub(page, "certificate")
            assert await page.input_value("#puk") == ""
            await stack.shot(page, "31-pin-set-with-puk")
            await context.close()
            # The new PIN is the card's now.
            connection = connect(simulated_card.reader)
            try:
                PivToken(PyscardConnection(connection)).verify_pin(NEW_PIN)
            finally:
                connection.disconnect()
            console = "\n".join(stack.console)
            for secret in ("12345678", "87654321", NEW_PIN):
                assert secret not in console

    asyncio.run(main())
