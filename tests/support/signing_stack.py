"""Signing through the portal with every real part but the browser: the CA (issuance,
OCSP, TSA) on loopback, the simulated card in a private pcscd enrolled by that CA, the
agent on loopback with the portal as its SMS OTP provider, and the portal. `Stack`
plays the page: it asks the agent for the certificate, the portal to prepare, the agent
to send the code, authorise (OTP then PIN) and sign, then the portal to complete."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.agent_ws import PORTAL as ORIGIN
from tests.support.agent_ws import page_socket, rpc
from tests.support.ca_fixtures import b64
from tests.support.pcsc import RunningCard
from tests.support.portal_card import provision_qualified
from tests.support.portal_pki import PortalPki, start_pki
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.waiting import wait_until_async

PIN = "123456"
PHONE = "+33612345670"


@dataclass
class Stack:
    pki: PortalPki
    portal: RunningPortal
    ws: aiohttp.ClientWebSocketResponse
    card: RunningCard
    credential: str
    certificate: bytes
    chain: list[bytes]
    _ids: int = 100

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        return await rpc(self.ws, method, params, self._ids)

    async def ready_to_sign(self, tx: Any, index: int = 0) -> str:
        invite = self.portal.invite_path(tx, index)
        await self.portal.consent(invite)
        view = await self.portal.call("POST", f"/api/s/{invite}/accept", {})
        assert view["step"] == "sign"
        return invite

    async def prepare(self, invite: str) -> Any:
        return await self.portal.call("POST", f"/api/s/{invite}/sign/prepare", {
            "certificate": b64(self.certificate), "chain": [b64(c) for c in self.chain],
            "phoneConfirmed": True})

    async def send_code(self, prepared: Any) -> str:
        reply = await self.rpc("credentials/sendOTP", {
            "credentialID": self.credential, "hashes": prepared["hashes"],
            "otpSession": prepared["otpSession"]})
        assert "result" in reply, reply
        texts = [text for _, text, _ in self.portal.store.sms()]  # the latest, any phone
        found = re.search(r"\b(\d{6})\b", texts[-1])
        assert found is not None, texts
        return found.group(1)

    async def at_the_code(self) -> tuple[Any, str, Any, str]:
        """A B-B transaction whose one signer has accepted, prepared and received the SMS
        code: the transaction, the invitation, the prepared session and the code."""
        tx = await self.portal.create(level="B-B")
        invite = await self.ready_to_sign(tx)
        prepared = await self.prepare(invite)
        return tx, invite, prepared, await self.send_code(prepared)

    async def authorize(self, prepared: Any, code: str, pin: str = PIN) -> dict[str, Any]:
        session = prepared["otpSession"]  # None: a TOTP transaction, the agent's own code
        return await self.rpc("credentials/authorize", {
            "credentialID": self.credential, "hashes": prepared["hashes"], "PIN": pin,
            "OTP": code, **({} if session is None else {"otpSession": session})})

    async def sign(self, invite: str) -> Any:
        """Every step of the page, for the signer behind `invite`."""
        prepared = await self.prepare(invite)
        code = await self.send_code(prepared)
        reply = await self.authorize(prepared, code)
        assert "result" in reply, reply
        signed = await self.rpc("signatures/signHash", {
            "credentialID": self.credential, "SAD": reply["result"]["SAD"],
            "hashes": prepared["hashes"]})
        return await self.portal.call("POST", f"/api/s/{invite}/sign/complete", {
            "sessionId": prepared["sessionId"],
            "signatures": signed["result"]["signatures"]})

    async def reprovision(self, given_name: str, surname: str) -> None:
        """The card now holds another person's key and qualified certificate (one reader:
        the next signer's own card)."""
        self.certificate = await asyncio.to_thread(
            provision_qualified, self.card, self.pki, given_name=given_name, surname=surname)

    async def pin_retries(self) -> int:
        """As the card reports it (VERIFY without data), through the agent."""
        tokens = (await self.rpc("tokens/list", {}))["result"]["tokens"]
        return int(tokens[0]["pinRetries"])


# Runs the scenario it decorates on a stack.
OnStack = Callable[[Callable[[Stack], Awaitable[None]]], None]


def with_stack(tmp_path: Path, card: RunningCard, *, otp_mode: str = "sms",
               **settings: Any) -> OnStack:
    """`settings`: more of the portal's configuration (e.g. its SMTP server);
    `otp_mode`: the agent's (agent/signing.py: "any" also takes its TOTP codes)."""
    def runner(scenario: Callable[[Stack], Awaitable[None]]) -> None:
        pki = start_pki(tmp_path / "ca")
        try:
            certificate = provision_qualified(card, pki)
            root = tmp_path / "root.der"
            root.write_bytes(pki.root)

            async def main() -> None:
                # The chain comes from the CA's AIA caIssuers (allowed for its prefix only).
                async with running_portal(tmp_path, trust_roots=[str(root)],
                                          timestamp_url=f"{pki.base}/tsa",
                                          ca_issuers_prefixes=[f"{pki.base}/certs/"],
                                          **settings) as portal, page_socket(
                        portal.session, tmp_path / "agent", ORIGIN, portal_url=portal.url,
                        otp_mode=otp_mode, portal_token_file=portal.agent_token_file) as ws:
                    stack = Stack(pki, portal, ws, card, "", certificate, [])
                    tokens = await _tokens(stack)
                    stack.credential = f"{tokens[0]['id']}/9C"
                    info = await stack.rpc("credentials/info",
                                           {"credentialID": stack.credential})
                    certs = [base64.b64decode(c) for c in
                             info["result"]["cert"]["certificates"]]
                    assert certs[0] == certificate
                    stack.chain = []  # as the card has it: the portal completes it
                    await scenario(stack)

            asyncio.run(main())
        finally:
            pki.stop()
    return runner


async def _tokens(stack: Stack) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]]:
        return list((await stack.rpc("tokens/list", {}))["result"]["tokens"])

    return await wait_until_async(listed, "a token listed by the agent", interval=0.1)
