"""One operation per reader (SECURITY #9): a second signing request that arrives while
the first is at the card waits for it. Two WebSocket connections to a real agent on
loopback, the simulated card behind pcscd, slowed so that the first operation is
still at the card when the second is sent; the card's own command log shows each
operation's APDUs together, and both are answered with good signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key

from agent.tokens.registry import TokenRegistry
from tests.integration.test_agent_signing import PIN, _credential, _provisioned, _spki_of
from tests.support.agent_ws import Agent, rpc, with_agent
from tests.support.pcsc import RunningCard
from tests.support.second_factor import enrol_totp
from tests.support.waiting import DEADLINE, wait_until

VERIFY, SIGN, RESET = "200080", "87119c", "20ff80"  # INS P1 P2 as the card logs them


def _digests(label: str, count: int) -> list[bytes]:
    return [hashlib.sha256(f"{label} document {i}".encode()).digest() for i in range(count)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _send(ws: aiohttp.ClientWebSocketResponse, method: str, params: dict[str, Any],
                request_id: int) -> None:
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                                  "id": request_id}))


async def _reply(ws: aiohttp.ClientWebSocketResponse, request_id: int) -> dict[str, Any]:
    while True:
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.receive_str(), DEADLINE))
        if reply.get("id") == request_id:
            return reply


def _labelled(apdus: list[str], owners: dict[str, str]) -> list[tuple[str, str]]:
    """(INS P1 P2, whose hash) per command: a signature names the hash it carries."""
    out = []
    for apdu in apdus:
        header = apdu[2:8]
        label = next((name for hex_digest, name in owners.items() if hex_digest in apdu), "")
        out.append((header, label if header == SIGN else ""))
    return out


def _one_operation(names: list[str]) -> list[tuple[str, str]]:
    """A PIN per signature, reset right after (SECURITY #17, #28)."""
    return [step for name in names for step in ((VERIFY, ""), (SIGN, name), (RESET, ""))]


def test_a_second_authorisation_waits_for_the_first_at_the_card(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    _, cert_der = _provisioned(simulated_card)
    simulated_card.restart_traced()
    public = load_der_public_key(_spki_of(cert_der))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    first, second = _digests("first", 3), _digests("second", 2)
    owners = {d.hex(): f"first {i}" for i, d in enumerate(first)}
    owners |= {d.hex(): f"second {i}" for i, d in enumerate(second)}

    @with_agent(tmp_path, registry=TokenRegistry())
    async def scenario(agent: Agent) -> None:
        ws_first, ws_second = await agent.connect(), await agent.connect()
        credential = await _credential(agent, ws_first)
        totp = await enrol_totp(ws_first, credential, PIN, agent.config.state_dir)
        now = time.time()  # two steps of one window: each accepted once, in this order
        code_first, code_second = totp.at(now), totp.at(now + 30)

        simulated_card.control("latency 400")  # each APDU stays at the card a while
        before = len(simulated_card.command_apdus())
        await _send(ws_first, "credentials/authorize", {
            "credentialID": credential, "hashes": [_b64(d) for d in first], "PIN": PIN,
            "OTP": code_first}, 1)
        # The first operation's PIN is on the card: it is at the reader now.
        await asyncio.to_thread(wait_until, lambda: VERIFY in [
            a[2:8] for a in simulated_card.command_apdus()[before:]],
            "the first authorisation's VERIFY at the card")
        await _send(ws_second, "credentials/authorize", {
            "credentialID": credential, "hashes": [_b64(d) for d in second], "PIN": PIN,
            "OTP": code_second}, 2)
        # Not vacuous: the first's last command (its PIN reset) had not reached the card.
        sent_during = _labelled(simulated_card.command_apdus()[before:], owners)
        assert sent_during[-3:] != _one_operation([f"first {len(first) - 1}"]), sent_during
        answered_first = await _reply(ws_first, 1)
        answered_second = await _reply(ws_second, 2)
        simulated_card.control("latency 0")

        trace = _labelled(simulated_card.command_apdus()[before:], owners)
        # The first looks its key up once (reads only), then signs; the key is known then.
        lookup = trace[:trace.index((VERIFY, ""))]
        assert not {VERIFY, SIGN, RESET} & {header for header, _ in lookup}, trace
        # One operation at a time: all of the first's commands, then all of the second's.
        assert trace[len(lookup):] == _one_operation(
            [f"first {i}" for i in range(len(first))]) + _one_operation(
            [f"second {i}" for i in range(len(second))]), trace
        assert "result" in answered_first, answered_first
        assert "result" in answered_second, answered_second

        for ws, digests, sad in ((ws_first, first, answered_first["result"]["SAD"]),
                                 (ws_second, second, answered_second["result"]["SAD"])):
            signed = await rpc(ws, "signatures/signHash", {
                "credentialID": credential, "SAD": sad,
                "hashes": [_b64(d) for d in digests]}, 3)
            signatures = [base64.b64decode(s) for s in signed["result"]["signatures"]]
            for digest, signature in zip(digests, signatures, strict=True):
                public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        await ws_first.close()
        await ws_second.close()
