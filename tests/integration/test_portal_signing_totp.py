"""A transaction whose second factor is TOTP (`secondFactor: "totp"`), signed through
every real part (the CA, the simulated card in pcscd, the agent, the portal): the
signer's authenticator is enrolled in the agent (`otp/enrol`, after the agent's own
second-factor proof), the portal opens no SMS session and sends no SMS, the agent
takes the authenticator's code without an `otpSession` and refuses a wrong one before
the card sees the PIN, and the portal completes the signature."""

from __future__ import annotations

from pathlib import Path

from tests.support.pcsc import RunningCard
from tests.support.second_factor import enrol_totp
from tests.support.signing_stack import PIN, Stack, with_stack


def test_a_totp_transaction_is_signed_with_the_agents_authenticator(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    async def scenario(stack: Stack) -> None:
        totp = await enrol_totp(stack.ws, stack.credential, PIN, tmp_path / "agent")
        tx = await stack.portal.create(signers=1, documents=1, level="B-B",
                                       secondFactor="totp")
        invite = await stack.ready_to_sign(tx)
        view = await stack.portal.call("GET", f"/api/s/{invite}")
        assert view["transaction"]["secondFactor"] == "totp"
        prepared = await stack.prepare(invite)
        assert prepared["otpSession"] is None and prepared["secondFactor"] == "totp"
        retries = await stack.pin_retries()
        wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
        refused = await stack.authorize(prepared, wrong)
        assert refused["error"]["data"]["error"] == "INVALID_OTP", refused
        assert await stack.pin_retries() == retries  # the card never saw the PIN
        reply = await stack.authorize(prepared, totp.now())
        assert "result" in reply, reply
        signed = await stack.rpc("signatures/signHash", {
            "credentialID": stack.credential, "SAD": reply["result"]["SAD"],
            "hashes": prepared["hashes"]})
        done = await stack.portal.call("POST", f"/api/s/{invite}/sign/complete", {
            "sessionId": prepared["sessionId"],
            "signatures": signed["result"]["signatures"]})
        assert done["signer"]["status"] == "signed", done
        assert stack.portal.store.sms() == []  # no SMS code for a TOTP transaction

    with_stack(tmp_path, simulated_card, otp_mode="any")(scenario)
