"""Sole control, breaks 2 and 4 of issue 13 (SECURITY #34, #36), run as an attacker
would: a real `qsign agent run`, the simulated card in a private pcscd, and a second
PC/SC client beside the agent reading the card's own status words.

- Break 4: after `pin/change`, `otp/enrol` and a signature through the agent, the card
  is locked again: the second client gets 63Cx to an empty VERIFY (not 9000), and
  GENERAL AUTHENTICATE with 9C is refused (6982).
- Break 2: `enroll/generate` with a wrong PIN changes no key; with the right PIN, a key
  its valid certificate certifies is replaced only after the signer approved the
  agent's code outside the page (`qsign agent approve CODE`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyotp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from cryptography.x509.oid import NameOID

from tests.integration.test_agent_crash import PIN
from tests.integration.test_sole_control_factor import Page
from tests.support import piv_apdus as piv
from tests.support.agent_daemon import AgentProcess
from tests.support.agent_ws import PORTAL
from tests.support.pcsc import RunningCard, connect
from tests.support.provision import CertIssuer, PyscardConnection, provision
from tests.support.second_factor import grant_second_factor

NEW_PIN = "24681357"
WRONG_PIN = "999999"
DIGEST = hashlib.sha256(b"whoever holds the card now").digest()


class SecondClient:
    """Another application on the same reader: its own PC/SC handle, its own APDUs."""

    def __init__(self, card: RunningCard) -> None:
        self.connection = connect(card.reader)
        self.link = PyscardConnection(self.connection)

    def __enter__(self) -> SecondClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.disconnect()

    def sw(self, command: piv.Sendable) -> int:
        return piv.send(self.link, command)[1]

    def locked(self, reselect: bool) -> None:
        """The PIN is not verified: empty VERIFY 63Cx, no 9C signature, no PIN-protected
        object. Without `reselect` the card's session is the agent's own."""
        if reselect:
            piv.expect_ok(self.link, piv.select())
        status = self.sw(piv.verify())
        assert status & 0xFFF0 == 0x63C0, f"{status:04X}: the card is left unlocked"
        signed = self.sw(piv.sign(piv.SLOT_SIGNATURE, piv.ALG_P256, DIGEST))
        assert signed == 0x6982, f"{signed:04X}: 9C signed for another application"
        protected = self.sw(piv.get_data(piv.FINGERPRINTS))
        assert protected == 0x6982, f"{protected:04X}: a PIN-protected object was read"

    def certificate(self, slot: int = piv.SLOT_SIGNATURE) -> x509.Certificate:
        piv.expect_ok(self.link, piv.select())
        return piv.certificate_from_object(
            piv.expect_ok(self.link, piv.get_data(piv.SLOT_CERTIFICATES[slot])))

    def signs_for(self, public: ec.EllipticCurvePublicKey, pin: str) -> bool:
        """Whether the key in 9C is the one `public` names: a signature by 9C verified."""
        piv.expect_ok(self.link, piv.select())
        piv.expect_ok(self.link, piv.verify(pin))
        try:
            signature = piv.signature_from_response(piv.expect_ok(
                self.link, piv.sign(piv.SLOT_SIGNATURE, piv.ALG_P256, DIGEST)))
        finally:
            piv.expect_ok(self.link, piv.verify_reset())
        try:
            public.verify(signature, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:  # another key signed
            return False
        return True


def _prepare(card: RunningCard) -> x509.Certificate:
    """A signer's card: a 9C key with a valid certificate, the signer's own PIN."""
    connection = connect(card.reader)
    link = PyscardConnection(connection)
    certificate = provision(link, 0x9C, piv.ALG_P256, CertIssuer())
    piv.expect_ok(link, piv.change_pin(piv.DEFAULT_PIN, PIN))
    connection.disconnect()
    return certificate


def _ec(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def _result(reply: dict[str, Any]) -> Any:
    assert "result" in reply, reply
    return reply["result"]


def _error(reply: dict[str, Any]) -> dict[str, Any]:
    assert "error" in reply, f"answered: {reply}"
    data: dict[str, Any] = reply["error"]["data"]
    return data


def _run(agent: AgentProcess, scenario: Callable[[Page], Awaitable[None]]) -> None:
    """`scenario` with a page of the portal's origin, closed whatever happens."""

    async def main() -> None:
        page = await Page.open(agent, PORTAL)
        try:
            await scenario(page)
        finally:
            await page.close()

    agent.start()
    try:
        asyncio.run(main())
    finally:
        agent.stop()


def test_no_method_that_presents_the_pin_leaves_the_card_unlocked(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    certificate = _prepare(simulated_card)
    agent = AgentProcess(tmp_path)

    async def scenario(page: Page) -> None:
        token_id = _result(await page.call("tokens/list", {}))["tokens"][0]["id"]
        await grant_second_factor(page.ws, token_id, agent.state_dir)

        assert _result(await page.call("pin/change", {
            "tokenID": token_id, "PIN": PIN, "newPIN": NEW_PIN})) == {}
        with SecondClient(simulated_card) as other:
            other.locked(reselect=False)  # the agent's relock alone
            other.locked(reselect=True)

        enrolled = _result(await page.call("otp/enrol", {
            "credentialID": f"{token_id}/9C", "PIN": NEW_PIN}))
        with SecondClient(simulated_card) as other:
            other.locked(reselect=False)
            other.locked(reselect=True)

        totp = pyotp.parse_uri(enrolled["uri"])
        assert isinstance(totp, pyotp.TOTP)
        document = hashlib.sha256(b"the signer's own document").digest()
        authorized = _result(await page.call("credentials/authorize", {
            "credentialID": f"{token_id}/9C", "PIN": NEW_PIN, "OTP": totp.now(),
            "hashes": [base64.b64encode(document).decode()]}))
        with SecondClient(simulated_card) as other:
            other.locked(reselect=False)
            other.locked(reselect=True)
            # The agent's signature was real: the key is the certified one.
            assert other.signs_for(_ec(certificate), NEW_PIN)
        signed = _result(await page.call("signatures/signHash", {
            "credentialID": f"{token_id}/9C", "SAD": authorized["SAD"],
            "hashes": [base64.b64encode(document).decode()]}))
        _ec(certificate).verify(base64.b64decode(signed["signatures"][0]), document,
                                ec.ECDSA(Prehashed(hashes.SHA256())))

        # A wrong PIN, too, leaves nothing verified (and the right one later works).
        assert _error(await page.call("pin/change", {
            "tokenID": token_id, "PIN": WRONG_PIN, "newPIN": PIN}))["error"] == \
            "INVALID_PIN"
        with SecondClient(simulated_card) as other:
            other.locked(reselect=False)

    _run(agent, scenario)


def _expired_certificate(card: RunningCard, slot: int) -> None:
    """A key in `slot` whose certificate expired yesterday."""
    connection = connect(card.reader)
    link = PyscardConnection(connection)
    piv.expect_ok(link, piv.select())
    assert piv.authenticate_management(link) == piv.SW_OK
    public = piv.public_key_from_template(
        piv.expect_ok(link, piv.generate(slot, piv.ALG_P256)), piv.ALG_P256)
    issuer = CertIssuer()
    now = dt.datetime.now(dt.UTC)
    expired = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
               .issuer_name(issuer.name).public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=400))
               .not_valid_after(now - dt.timedelta(days=1))
               .sign(issuer.key, hashes.SHA256()))
    piv.expect_ok(link, piv.put_certificate(slot, expired.public_bytes(Encoding.DER))
                  .chained())
    connection.disconnect()


def _foreign_certificate(card: RunningCard, slot: int) -> None:
    """A key in `slot` and a valid certificate for some other key."""
    connection = connect(card.reader)
    link = PyscardConnection(connection)
    piv.expect_ok(link, piv.select())
    assert piv.authenticate_management(link) == piv.SW_OK
    piv.expect_ok(link, piv.generate(slot, piv.ALG_P256))
    other = CertIssuer().certify(ec.generate_private_key(ec.SECP256R1()).public_key(),
                                 "someone else's key")
    piv.expect_ok(link, piv.put_certificate(slot, other.public_bytes(Encoding.DER))
                  .chained())
    connection.disconnect()


def test_a_certified_key_changes_only_with_the_pin_and_a_confirmation_outside_the_page(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    certificate = _prepare(simulated_card)
    _expired_certificate(simulated_card, piv.SLOT_AUTHENTICATION)
    _foreign_certificate(simulated_card, piv.SLOT_KEY_MANAGEMENT)
    agent = AgentProcess(tmp_path)
    old_key = _ec(certificate)

    def unchanged() -> None:
        with SecondClient(simulated_card) as other:
            other.locked(reselect=False)
            assert other.certificate() == certificate
            assert other.signs_for(old_key, PIN), "the certified key in 9C was replaced"

    async def scenario(page: Page) -> None:
        token_id = _result(await page.call("tokens/list", {}))["tokens"][0]["id"]
        await grant_second_factor(page.ws, token_id, agent.state_dir)
        generate = {"tokenID": token_id, "keyID": "9C", "PIN": PIN}

        wrong = _error(await page.call("enroll/generate", {**generate, "PIN": WRONG_PIN}))
        assert wrong == {"error": "INVALID_PIN", "attemptsLeft": 2}
        unchanged()

        asked = _error(await page.call("enroll/generate", generate))
        assert asked["error"] == "CONFIRMATION_REQUIRED", asked
        assert asked["action"] == "replace-key"
        code = asked["code"]
        unchanged()
        # A code nobody approved, or one the page made up, changes nothing either.
        assert _error(await page.call("enroll/generate", {
            **generate, "confirmation": code}))["error"] == "CONFIRMATION_REQUIRED"
        assert _error(await page.call("enroll/generate", {
            **generate, "confirmation": "ABCD-EFGH"}))["error"] == "CONFIRMATION_REQUIRED"
        unchanged()

        approved = await asyncio.to_thread(agent.cli, "approve", code)
        assert approved.returncode == 0, approved.stderr
        assert "confirmed" in approved.stdout and "qsign test 9C" in approved.stdout
        made = _result(await page.call("enroll/generate", {**generate,
                                                           "confirmation": code}))
        new_key = load_der_public_key(base64.b64decode(made["publicKey"]))
        assert isinstance(new_key, ec.EllipticCurvePublicKey)
        assert new_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != \
            old_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        with SecondClient(simulated_card) as other:
            other.locked(reselect=False)
            assert other.signs_for(new_key, PIN)
            assert not other.signs_for(old_key, PIN)

        # No confirmation for what nobody loses: an expired certificate, or a certificate
        # for another key.
        for slot in ("9A", "9D"):
            _result(await page.call("enroll/generate", {**generate, "keyID": slot}))

    _run(agent, scenario)
