"""An OATH HOTP token as the second factor (RFC 4226; SECURITY #20), end to end: the
person provisions it with `qsign agent otp hotp` (a child process, beside a running
agent), then a page signs over the agent's WebSocket with the card's PIN and the
token's codes: a code a few presses ahead is accepted, spent codes and codes beyond the
look-ahead are refused without burning a PIN try, and the page cannot swap the token
for an authenticator of its own without the second factor."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import aiohttp
import pyotp

from agent.identity.hotp import LOOK_AHEAD
from agent.tokens.registry import TokenRegistry
from firmware_sim.state import CardStore
from tests.support import piv_apdus as piv
from tests.support.agent_ws import Agent, rpc, with_agent
from tests.support.cli import run_qsign
from tests.support.pcsc import RunningCard, connect
from tests.support.provision import CertIssuer, PyscardConnection, provision

PIN = "123456"
SECRET_HEX = "3132333435363738393031323334353637383930"  # RFC 4226 Appendix D


def _code(counter: int) -> str:
    return pyotp.HOTP(base64.b32encode(bytes.fromhex(SECRET_HEX)).decode()).at(counter)


def _pin_retries(card: RunningCard) -> int:
    return CardStore.load(card.state_path).state.pin.retries_left


async def _authorize(ws: aiohttp.ClientWebSocketResponse, credential: str, otp: str,
                     ident: int) -> dict[str, object]:
    digest = base64.b64encode(hashlib.sha256(otp.encode() + bytes([ident])).digest()).decode()
    reply: dict[str, object] = await rpc(ws, "credentials/authorize", {
        "credentialID": credential, "hashes": [digest], "PIN": PIN, "OTP": otp}, ident)
    return reply


def test_hotp_token_signs_once_per_code_with_a_bounded_look_ahead(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    connection = connect(simulated_card.reader)
    provision(PyscardConnection(connection), 0x9C, piv.ALG_P256, CertIssuer())
    connection.disconnect()
    config = tmp_path / "agent.toml"

    @with_agent(tmp_path, registry=TokenRegistry())
    async def scenario(agent: Agent) -> None:
        config.write_text(f'[agent]\nstate_dir = "{agent.config.state_dir}"\n')
        ws = await agent.connect()
        tokens = (await rpc(ws, "tokens/list"))["result"]["tokens"]
        credential = f"{tokens[0]['id']}/9C"
        done = await asyncio.to_thread(
            run_qsign, "agent", "otp", "hotp", credential, "--config", str(config),
            input_text=SECRET_HEX + "\n")
        assert done.returncode == 0, done.stderr
        before = _pin_retries(simulated_card)

        signed = await _authorize(ws, credential, _code(3), 1)  # three presses lost
        assert "SAD" in signed["result"], signed  # type: ignore[operator]
        for spent, ident in ((_code(3), 2), (_code(1), 3)):
            refused = await _authorize(ws, credential, spent, ident)
            assert refused["error"]["data"] == {  # type: ignore[index]
                "error": "INVALID_OTP", "reason": "replayed"}, refused
        far = await _authorize(ws, credential, _code(4 + LOOK_AHEAD + 1), 4)
        assert far["error"]["data"]["error"] == "INVALID_OTP", far  # type: ignore[index]
        assert _pin_retries(simulated_card) == before
        assert "SAD" in (await _authorize(ws, credential, _code(4), 5))["result"]  # type: ignore[operator]

        # The page cannot enrol an authenticator of its own in the token's place.
        swapped = await rpc(ws, "otp/enrol", {"credentialID": credential, "PIN": PIN}, 6)
        assert swapped["error"]["data"]["error"] == "SECOND_FACTOR_REQUIRED", swapped
        await ws.close()

        bad = await asyncio.to_thread(
            run_qsign, "agent", "otp", "hotp", credential, "--config", str(config),
            input_text="3132\n")
        assert bad.returncode == 2 and "128 bits" in bad.stderr, bad.stderr
