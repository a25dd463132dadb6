"""What a signer and a requester do in the portal's pages, one step each, for the
browser tests on the stack of tests/support/portal_e2e.py: accept the documents, choose
the credential, ask for the SMS code, sign, sign in to Personal Space; sign in to the
requester's page and open a transaction."""

from __future__ import annotations

from playwright.async_api import Page

from tests.support.portal_e2e import PHONE, Stack, ready, until


async def accept_documents(page: Page) -> None:
    await page.click("#accept")
    await page.wait_for_selector("body[data-step='sign']")


async def choose_credential(page: Page, timeout: float | None = None) -> None:
    """The first certificate the agent lists, and the signer's phone confirmed."""
    await page.wait_for_selector("input[name='credential']", state="attached", timeout=timeout)
    await page.check("input[name='credential']")
    await page.check("#phone-confirm")


async def ask_code(stack: Stack, page: Page, pin: str, phone: str = PHONE) -> str:
    """The PIN typed and a code asked for: the code texted to `phone`."""
    before = await stack.sms_count(phone)
    await page.fill("#pin", pin)
    await page.click("#send-otp")
    await page.wait_for_selector("#otp-step:not([hidden])")
    return await stack.sms_code(phone, before)


async def submit_signature(page: Page) -> None:
    """Sign with the PIN and code typed; the page must reach its done step."""
    await page.click("#sign-submit")
    await until(page, "document.body.dataset.step === 'done' || "
                      "!document.getElementById('sign-error').hidden")
    assert await page.get_attribute("body", "data-step") == "done", \
        await page.text_content("#sign-error")


async def open_personal_space(stack: Stack, page: Page, link: str, phone: str,
                              login_shot: str = "") -> None:
    """Personal Space at its mailed `link`, signed in with the code texted to `phone`
    (`login_shot` names a screenshot of the sign-in page)."""
    before = await stack.sms_count(phone)
    await page.goto(link)
    await ready(page)
    if login_shot:
        await stack.shot(page, login_shot)
    await page.click("#send-code")
    await page.wait_for_selector("#code-form:not([hidden])")
    await page.fill("#code", await stack.sms_code(phone, before))
    await page.click("#code-submit")
    await page.wait_for_selector("#space:not([hidden])")


async def sign_in_as_requester(stack: Stack, page: Page, lang: str = "en") -> None:
    """The requester's page, signed in with the API token: the new-transaction form and
    the list shown."""
    await page.goto(f"{stack.origin}/requester?lang={lang}")
    await ready(page)
    await page.fill("#token", stack.token)
    await page.click("#token-submit")
    await page.wait_for_selector("#list:not([hidden])")


async def open_transaction(page: Page) -> None:
    """The requester's first listed transaction opened."""
    await page.click("#transactions button")
    await page.wait_for_selector("#detail:not([hidden])")
