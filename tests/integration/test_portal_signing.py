"""Signing through the portal with every real part but the browser: the CA (issuance,
OCSP, TSA) on loopback, the simulated card in a private pcscd, the agent on loopback
with the portal as its SMS OTP provider, and the portal; the test plays the page
(tests/support/signing_stack.py). The signed PDFs are validated offline by pyHanko as
PAdES B-LT under a qualified certificate."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509

from portal.certificates import check_qualified
from tests.support.ca_fixtures import b64
from tests.support.pcsc import RunningCard
from tests.support.portal_pki import start_pki, validate_pdf
from tests.support.portal_service import running_portal
from tests.support.signing_stack import PHONE, OnStack, Stack, with_stack


@pytest.fixture
def on_stack(simulated_card: RunningCard, tmp_path: Path) -> OnStack:
    """Runs the decorated scenario on the stack, the simulated card enrolled by its CA."""
    return with_stack(tmp_path, simulated_card)


def test_two_signers_sign_and_the_pdfs_validate_as_b_lt(on_stack: OnStack) -> None:
    @on_stack
    async def scenario(stack: Stack) -> None:
        portal = stack.portal
        tx = await portal.create(level="B-LT")
        checked = await portal.call(
            "POST", f"/api/s/{portal.invite_path(tx, 0)}/certificates/check",
            {"certificate": b64(stack.certificate), "chain": [b64(stack.pki.issuing)]})
        assert checked["qualified"] is True, checked
        view = await stack.sign(await stack.ready_to_sign(tx, 0))
        assert view["step"] == "done"
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert [s["status"] for s in after["signers"]] == ["signed", "invited"]
        await stack.reprovision("Bob", "Durand")  # the second signer signs with their own
        view = await stack.sign(await stack.ready_to_sign(after, 1))
        assert view["step"] == "done"
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert after["status"] == "completed"
        for doc in after["documents"]:
            pdf = await portal.call(
                "GET", f"/api/v1/transactions/{tx['id']}/documents/{doc['id']}", auth=True)
            result = await validate_pdf(pdf, [stack.pki.root], offline=True,
                                        other_certs=[stack.pki.issuing])
            assert result.has_dss and len(result.statuses) == 2
            for status in result.statuses:
                assert status.bottom_line, status.pretty_print_details()
                assert status.timestamp_validity is not None
                signer = status.signing_cert
                checked_again = await check_qualified(
                    signer.dump(), [stack.pki.issuing], trust_roots=[stack.pki.root],
                    at=portal.clock(), ocsp=False)
                assert checked_again.qualified, checked_again.reasons
        # Everyone is told; Personal Space opens with an SMS code.
        mail = portal.store.mails(to="s1@example.test")[-1]
        assert "Personal Space" in mail.body
        space = re.search(r"/me/(\S+)", mail.body)
        assert space is not None
        sent = await portal.call("POST", f"/api/me/{space.group(1)}/otp", {})
        code = re.search(r"\b(\d{6})\b", portal.sms(PHONE)[-1])
        assert code is not None
        session = await portal.call("POST", f"/api/me/{space.group(1)}/session",
                                    {"otpSession": sent["otpSession"],
                                     "code": code.group(1)})
        async with portal.session.get(portal.url + "/api/me", headers={
                "Authorization": f"Bearer {session['session']}"}) as response:
            me = await response.json()
        assert len(me["documents"]) == 2
        [cert] = me["certificates"]
        assert cert["qualified"] and cert["status"] == "valid"
        not_after = x509.Certificate.load(stack.certificate).not_valid_after
        assert cert["notAfter"].startswith(not_after.strftime("%Y-%m-%d"))


def test_wrong_and_replayed_codes_leave_the_pin_alone(on_stack: OnStack) -> None:
    @on_stack
    async def scenario(stack: Stack) -> None:
        portal = stack.portal
        tx, invite, prepared, code = await stack.at_the_code()
        retries = await stack.pin_retries()
        wrong = "000000" if code != "000000" else "111111"
        reply = await stack.authorize(prepared, wrong)
        assert reply["error"]["data"]["error"] == "INVALID_OTP", reply
        assert await stack.pin_retries() == retries
        # Completing without a verified code is refused; nothing is stored.
        err = await portal.call("POST", f"/api/s/{invite}/sign/complete", {
            "sessionId": prepared["sessionId"],
            "signatures": [b64(b"0" * 70)] * len(prepared["hashes"])}, expect=401)
        assert err["error"] == "OTP_INVALID"
        portal.clock.advance(seconds=2)  # past the delay after a wrong code
        # A wrong PIN after the right code: the card counts it, the code is spent.
        reply = await stack.authorize(prepared, code, pin="654321")
        assert reply["error"]["data"]["error"] == "INVALID_PIN", reply
        assert reply["error"]["data"]["attemptsLeft"] == retries - 1
        reply = await stack.authorize(prepared, code)
        assert reply["error"]["data"]["error"] == "INVALID_OTP", reply
        assert await stack.pin_retries() == retries - 1
        # A code from another session is refused for this one's hashes.
        again = await stack.prepare(invite)
        reply = await stack.authorize(again, code)
        assert reply["error"]["data"]["error"] == "INVALID_OTP", reply
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert all(d["signatures"] == 0 for d in after["documents"])
        # The right way still works afterwards.
        assert (await stack.sign(invite))["step"] == "done"


def test_bad_signatures_and_removed_card_store_nothing(on_stack: OnStack) -> None:
    @on_stack
    async def scenario(stack: Stack) -> None:
        portal = stack.portal
        tx, invite, prepared, code = await stack.at_the_code()
        reply = await stack.authorize(prepared, code)
        signed = await stack.rpc("signatures/signHash", {
            "credentialID": stack.credential, "SAD": reply["result"]["SAD"],
            "hashes": prepared["hashes"]})
        signatures = signed["result"]["signatures"]
        # Swapped: each is a valid signature, of the other document.
        err = await portal.call("POST", f"/api/s/{invite}/sign/complete", {
            "sessionId": prepared["sessionId"], "signatures": signatures[::-1]}, expect=422)
        assert err["error"] == "SIGNATURE_INVALID"
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert all(d["signatures"] == 0 for d in after["documents"])
        assert after["signers"][0]["status"] == "accepted"
        # The card leaves the reader between the code and the signature.
        again = await stack.prepare(invite)
        portal.clock.advance(seconds=31)  # the resend delay
        code = await stack.send_code(again)
        stack.card.remove()
        try:
            reply = await stack.authorize(again, code)
            assert reply["error"]["data"]["error"] in ("TOKEN_REMOVED", "TOKEN_NOT_FOUND"), \
                reply
        finally:
            stack.card.insert()
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert all(d["signatures"] == 0 for d in after["documents"])
        err = await portal.call("POST", f"/api/s/{invite}/sign/complete", {
            "sessionId": prepared["sessionId"], "signatures": signatures}, expect=404)
        assert err["error"] == "SESSION_UNKNOWN"  # replaced by the newer session


def test_chains_are_completed_from_configuration_or_allowed_aia_only(tmp_path: Path) -> None:
    """The page sends certificates: their AIA addresses are fetched only under the
    configured prefixes (no blind requests where a crafted certificate points)."""
    pki = start_pki(tmp_path / "ca")
    try:
        signer = pki.issue("p256")
        (tmp_path / "root.der").write_bytes(pki.root)
        (tmp_path / "issuing.der").write_bytes(pki.issuing)

        async def chain(**settings: Any) -> list[bytes]:
            async with running_portal(tmp_path / str(len(settings)),
                                      trust_roots=[str(tmp_path / "root.der")],
                                      **settings) as portal:
                return await portal.state.desk.complete_chain(signer.certificate, [])

        assert asyncio.run(chain()) == []
        assert asyncio.run(chain(ca_issuers_prefixes=["http://127.0.0.1:9/"])) == []
        assert asyncio.run(chain(ca_issuers_prefixes=[f"{pki.base}/certs/"])) == [
            pki.issuing]
        assert asyncio.run(chain(intermediates=[str(tmp_path / "issuing.der")])) == [
            pki.issuing]
    finally:
        pki.stop()
