"""SECURITY #43 (issue 13): /api/v1/sms-otp/verify and /send answer only an agent that
presents a configured credential (portal/agent_auth.py); attacked with a plain HTTP
client on loopback, and with the real agent given a wrong credential. The real agent
with the right one still signs (the simulated card in a private pcscd, tests/
integration/test_portal_signing.py's stack).
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from portal.agent_auth import new_agent_token
from portal.config import ConfigError, PortalConfig
from tests.support.pcsc import RunningCard
from tests.support.portal_service import running_portal
from tests.support.signing_stack import PHONE, Stack, with_stack


async def _post(url: str, body: Any, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
    """A plain HTTP client: nothing but what the caller gives."""
    async with aiohttp.ClientSession() as http, http.post(url, json=body,
                                                          headers=headers) as answer:
        return answer.status, await answer.json()


def test_sms_otp_routes_answer_only_the_agents_credential(simulated_card: RunningCard,
                                                           tmp_path: Path) -> None:
    @with_stack(tmp_path, simulated_card)
    async def scenario(stack: Stack) -> None:
        portal = stack.portal
        tx = await portal.create(level="B-B", signers=1)
        invite = await stack.ready_to_sign(tx, 0)
        prepared = await stack.prepare(invite)
        # The agent with a wrong credential: nothing is texted, nothing verified.
        right = portal.agent_token_file.read_text()
        portal.agent_token_file.write_text(new_agent_token()[0])
        reply = await stack.rpc("credentials/sendOTP", {
            "credentialID": stack.credential, "hashes": prepared["hashes"],
            "otpSession": prepared["otpSession"]})
        assert "error" in reply, reply
        assert portal.sms(PHONE) == []
        portal.agent_token_file.write_text(right)
        code = await stack.send_code(prepared)

        otp = {"session": prepared["otpSession"], "hashes": prepared["hashes"]}
        for headers in (None, {"Authorization": f"Bearer {new_agent_token()[0]}"},
                        portal.auth(),  # the requester's token is not an agent's
                        {"Authorization": f"Basic {portal.agent_token}"}):
            for route, body in (("verify", {**otp, "code": code}), ("send", otp)):
                status, answer = await _post(f"{portal.url}/api/v1/sms-otp/{route}", body,
                                             headers)
                assert (status, answer["error"]) == (401, "UNAUTHORIZED"), (headers, answer)
        assert not portal.store.code_verified(prepared["sessionId"])
        assert len(portal.sms(PHONE)) == 1  # the stranger's send texted nothing

        # The agent with its credential: the same code signs.
        reply = await stack.authorize(prepared, code)
        assert "result" in reply, reply
        signed = await stack.rpc("signatures/signHash", {
            "credentialID": stack.credential, "SAD": reply["result"]["SAD"],
            "hashes": prepared["hashes"]})
        view = await portal.call("POST", f"/api/s/{invite}/sign/complete", {
            "sessionId": prepared["sessionId"],
            "signatures": signed["result"]["signatures"]})
        assert view["step"] == "done"


def test_sms_otp_routes_refuse_everyone_without_a_configured_agent(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path, agent_token_sha256=[]) as portal:
            body = {"session": "x" * 32, "code": "123456",
                    "hashes": [base64.b64encode(b"\0" * 32).decode()]}
            for route in ("verify", "send"):
                status, answer = await _post(
                    f"{portal.url}/api/v1/sms-otp/{route}", body,
                    {"Authorization": f"Bearer {portal.agent_token}"})
                assert status == 401, answer
                assert answer["reason"] == "agent-not-configured"

    asyncio.run(main())


def test_agent_credentials_are_configured_as_sha256_digests() -> None:
    token, digest = new_agent_token()
    config = PortalConfig.from_mapping({"portal": {"agent_token_sha256": [digest.upper()]}})
    assert config.agent_token_sha256 == (digest,)
    for wrong in ([token], [digest[:-1]], digest, [1]):  # a token itself is not accepted
        with pytest.raises(ConfigError, match="agent_token_sha256"):
            PortalConfig.from_mapping({"portal": {"agent_token_sha256": wrong}})
