"""A second factor for tests that need a token's PIN methods (pin/change, otp/enrol,
enroll/generate) but are not about how it is proved: the connection asks for a
confirmation outside the page and the test approves it as `qsign agent approve CODE`
does (agent.confirmations.decide on the agent's state directory). Tests of the proofs
themselves use the real CLI, TOTP and SMS codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pyotp

from agent.confirmations import decide
from agent.state import AgentState
from tests.support.agent_ws import rpc


def approve_outside_page(state_dir: Path, code: str) -> str:
    state = AgentState(state_dir)
    try:
        return decide(state, code, approve=True)[1]
    finally:
        state.close()


async def grant_second_factor(ws: aiohttp.ClientWebSocketResponse, token_id: str,
                              state_dir: Path) -> None:
    """This connection proves a second factor for `token_id` by a confirmation."""
    asked = await rpc(ws, "secondFactor/verify", {"tokenID": token_id}, 9001)
    assert asked["error"]["data"]["error"] == "CONFIRMATION_REQUIRED", asked
    code = asked["error"]["data"]["code"]
    await asyncio.to_thread(approve_outside_page, state_dir, code)
    granted = await rpc(ws, "secondFactor/verify", {"tokenID": token_id,
                                                      "confirmation": code}, 9002)
    assert granted["result"]["method"] == "confirmation", granted


async def enrol_totp(ws: aiohttp.ClientWebSocketResponse, credential: str, pin: str,
                     state_dir: Path) -> pyotp.TOTP:
    """A TOTP secret for `credential`, enrolled through the agent as a page would."""
    await grant_second_factor(ws, credential.rpartition("/")[0], state_dir)
    reply = await rpc(ws, "otp/enrol", {"credentialID": credential, "PIN": pin}, 9003)
    assert reply["result"]["uri"].startswith("otpauth://totp/"), reply
    totp = pyotp.parse_uri(reply["result"]["uri"])
    assert isinstance(totp, pyotp.TOTP)
    return totp
