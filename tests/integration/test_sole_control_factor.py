"""Sole control, breaks 1 and 3 of issue 13 (SECURITY #33, #35), as an attacker runs
them: a real `qsign agent run`, the simulated card in a private pcscd, a hostile origin
that the person paired and that knows the PIN. Without the signer's own second factor
it gets no signature, no new authenticator, no key change and no lock; the card's own
counters, read by a second PC/SC client, say so."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from agent.audit import SecurityJournal
from agent.journal import SignatureJournal
from tests.integration.test_agent_crash import PIN
from tests.support import piv_apdus as piv
from tests.support.agent_daemon import AgentProcess
from tests.support.agent_ws import PORTAL, rpc
from tests.support.pcsc import RunningCard, connect
from tests.support.provision import CertIssuer, PyscardConnection, provision

HOSTILE = "https://hostile.example.test"
WRONG_PIN = "999999"


def _card_counters(card: RunningCard) -> tuple[int, int]:
    """PIN and PUK tries left, as a second PC/SC client reads them from the card."""
    connection = connect(card.reader)
    try:
        link = PyscardConnection(connection)
        piv.expect_ok(link, piv.select())
        _, sw = piv.send(link, piv.verify())
        assert sw & 0xFFF0 == 0x63C0, f"{sw:04X}: the card is left unlocked"
        # The PUK has no status query in SP 800-73-4; the card's GET METADATA tells.
        metadata = piv.expect_ok(link, piv.get_metadata(piv.PUK_REF))
        retries = metadata[metadata.index(b"\x06\x02") + 2:][:2]
        return sw & 0x0F, retries[1]
    finally:
        connection.disconnect()


def _certificate(card: RunningCard) -> x509.Certificate:
    connection = connect(card.reader)
    try:
        link = PyscardConnection(connection)
        piv.expect_ok(link, piv.select())
        data = piv.expect_ok(link, piv.get_data(piv.SLOT_CERTIFICATES[piv.SLOT_SIGNATURE]))
        return piv.certificate_from_object(data)
    finally:
        connection.disconnect()


class Page:
    """One WebSocket, as a page on `origin` holds it."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
                 ) -> None:
        self.session = session
        self.ws = ws
        self.next_id = 0

    @classmethod
    async def open(cls, agent: AgentProcess, origin: str) -> Page:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(f"http://127.0.0.1:{agent.port}/v1/ws", headers={
            "Origin": origin, "Host": f"127.0.0.1:{agent.port}"})
        return cls(session, ws)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        return await rpc(self.ws, method, params, self.next_id)

    async def refused(self, method: str, params: dict[str, Any]) -> str:
        reply = await self.call(method, params)
        assert "error" in reply, f"{method} was answered: {reply}"
        code: str = reply["error"]["data"]["error"]
        return code

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def _pair(agent: AgentProcess, origin: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{agent.port}/v1/pair",
            json={"jsonrpc": "2.0", "method": "pair/request", "id": 1},
            headers={"Origin": origin, "Host": f"127.0.0.1:{agent.port}"}) as response:
        code = (await response.json())["result"]["code"]
    approved = await asyncio.to_thread(agent.cli, "approve", code)
    assert approved.returncode == 0, approved.stderr


async def _signer_enrols_totp(agent: AgentProcess, page: Page, token_id: str) -> pyotp.TOTP:
    """The signer's first authenticator: confirmed by the person with the real CLI."""
    asked = await page.call("secondFactor/verify", {"tokenID": token_id})
    code = asked["error"]["data"]["code"]
    assert asked["error"]["data"]["approve"] == f"qsign agent approve {code}"
    listed = await asyncio.to_thread(agent.cli, "origins")
    assert f"waiting: qsign agent approve {code}" in listed.stdout
    approved = await asyncio.to_thread(agent.cli, "approve", code)
    assert approved.returncode == 0 and "confirmed" in approved.stdout, approved.stderr
    granted = await page.call("secondFactor/verify", {"tokenID": token_id,
                                                      "confirmation": code})
    assert granted["result"]["method"] == "confirmation"
    enrolled = await page.call("otp/enrol", {"credentialID": f"{token_id}/9C", "PIN": PIN})
    totp = pyotp.parse_uri(enrolled["result"]["uri"])
    assert isinstance(totp, pyotp.TOTP)
    return totp


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_paired_origin_with_the_pin_gets_nothing_without_the_second_factor(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    connection = connect(simulated_card.reader)
    link = PyscardConnection(connection)
    provision(link, 0x9C, piv.ALG_P256, CertIssuer())
    piv.expect_ok(link, piv.change_pin(piv.DEFAULT_PIN, PIN))
    connection.disconnect()
    certificate = _certificate(simulated_card)
    agent = AgentProcess(tmp_path)
    agent.start()

    async def scenario() -> None:
        signer = await Page.open(agent, PORTAL)
        token_id = (await signer.call("tokens/list", {}))["result"]["tokens"][0]["id"]
        credential = f"{token_id}/9C"
        totp = await _signer_enrols_totp(agent, signer, token_id)
        await signer.close()
        counters = _card_counters(simulated_card)

        await _pair(agent, HOSTILE)
        hostile = await Page.open(agent, HOSTILE)
        # Break 1: the PIN alone does not enrol the attacker's own authenticator.
        assert await hostile.refused("otp/enrol", {"credentialID": credential,
                                                   "PIN": PIN}) == "SECOND_FACTOR_REQUIRED"
        # Nor does a guessed code, a made-up confirmation, or asking for one.
        assert await hostile.refused("secondFactor/verify", {
            "tokenID": token_id, "OTP": "000000"}) == "INVALID_OTP"
        assert await hostile.refused("secondFactor/verify", {
            "tokenID": token_id, "confirmation": "ABCD-EFGH"}) == "CONFIRMATION_REQUIRED"
        assert await hostile.refused("otp/enrol", {"credentialID": credential,
                                                   "PIN": PIN}) == "SECOND_FACTOR_REQUIRED"
        # Break 3: wrong PINs and PUKs never reach the card.
        for _ in range(3):
            assert await hostile.refused("pin/change", {
                "tokenID": token_id, "PIN": WRONG_PIN, "newPIN": "1111"}) in (
                "SECOND_FACTOR_REQUIRED", "RATE_LIMITED")
            assert await hostile.refused("pin/unblock", {
                "tokenID": token_id, "PUK": "00000000", "newPIN": "1111"}) in (
                "SECOND_FACTOR_REQUIRED", "RATE_LIMITED")
        # No key change either, right PIN or not.
        assert await hostile.refused("enroll/generate", {
            "tokenID": token_id, "keyID": "9C", "PIN": PIN}) in (
            "SECOND_FACTOR_REQUIRED", "RATE_LIMITED")
        # Signing needs the OTP before the PIN.
        digest = hashlib.sha256(b"the attacker's document").digest()
        assert await hostile.refused("credentials/authorize", {
            "credentialID": credential, "hashes": [_b64(digest)], "PIN": PIN,
            "OTP": "123456"}) == "INVALID_OTP"
        # Throttled per origin: a page cannot hammer the PIN methods.
        codes = {await hostile.refused("pin/change", {
            "tokenID": token_id, "PIN": WRONG_PIN, "newPIN": "1111"}) for _ in range(15)}
        assert "RATE_LIMITED" in codes
        await hostile.close()

        assert _card_counters(simulated_card) == counters, "a PIN or PUK try was burned"
        assert _certificate(simulated_card) == certificate

        # The signer's own authenticator still works, and signs with the same key.
        signer = await Page.open(agent, PORTAL)
        mine = hashlib.sha256(b"the signer's document").digest()
        sad = (await signer.call("credentials/authorize", {
            "credentialID": credential, "hashes": [_b64(mine)], "PIN": PIN,
            "OTP": totp.now()}))["result"]["SAD"]
        signed = await signer.call("signatures/signHash", {
            "credentialID": credential, "SAD": sad, "hashes": [_b64(mine)]})
        signature = base64.b64decode(signed["result"]["signatures"][0])
        public = certificate.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, mine, ec.ECDSA(Prehashed(hashes.SHA256())))
        # A current TOTP code proves the factor for the token's PIN methods, on this
        # connection only.
        next_step = totp.at(time.time() + totp.interval)  # the used step is spent
        proved = await signer.call("secondFactor/verify", {"tokenID": token_id,
                                                           "OTP": next_step})
        assert proved["result"]["method"] == "totp", proved
        other = await Page.open(agent, PORTAL)
        assert await other.refused("pin/change", {"tokenID": token_id, "PIN": PIN,
                                                  "newPIN": "24681357"}) == \
            "SECOND_FACTOR_REQUIRED"
        await other.close()
        changed = await signer.call("pin/change", {"tokenID": token_id, "PIN": PIN,
                                                   "newPIN": "24681357"})
        assert changed == {"jsonrpc": "2.0", "id": signer.next_id, "result": {}}
        await signer.close()

    try:
        asyncio.run(scenario())
    finally:
        agent.stop()
    assert _card_counters(simulated_card) == (3, 3)
    journal = SignatureJournal(agent.state_dir)
    try:
        events = SecurityJournal(journal.db).events()
    finally:
        journal.close()
    refused = [e for e in events if e.origin == HOSTILE]
    assert refused and all(e.outcome.startswith("refused") for e in refused)
    assert any(e.event == "totp-enrol" and e.origin == PORTAL and e.outcome == "enrolled"
               for e in events)
    assert any(e.event == "pin-change" and e.outcome == "done" for e in events)
