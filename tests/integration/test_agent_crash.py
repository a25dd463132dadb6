"""kill -9 the agent (a real `qsign agent run` process) between authorisation and
signature, and during a signature: after a restart nothing is signed twice, the
journal is consistent, a SAD is never usable twice, OTP throttling persists, and no
PIN reached the agent's log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

from agent.journal import SignatureJournal
from firmware_sim.state import CardStore
from tests.support import piv_apdus as piv
from tests.support.agent_daemon import AgentProcess
from tests.support.agent_ws import PORTAL, rpc
from tests.support.pcsc import RunningCard, connect
from tests.support.provision import CertIssuer, PyscardConnection, provision
from tests.support.second_factor import enrol_totp
from tests.support.waiting import wait_until

PIN = "482913"  # distinctive, to look for in the logs
GENERAL_AUTHENTICATE_9C = "87119c"  # INS P1 P2 as the card logs them


async def _session_call(agent: AgentProcess, method: str, params: dict[str, Any]
                        ) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"http://127.0.0.1:{agent.port}/v1/ws",
            headers={"Origin": PORTAL, "Host": f"127.0.0.1:{agent.port}"}) as ws:
        return await rpc(ws, method, params)


def call(agent: AgentProcess, method: str, params: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    return asyncio.run(_session_call(agent, method, params or {}))


def _setup(card: RunningCard, tmp_path: Path) -> tuple[AgentProcess, str, pyotp.TOTP]:
    connection = connect(card.reader)
    link = PyscardConnection(connection)
    provision(link, 0x9C, piv.ALG_P256, CertIssuer())
    piv.expect_ok(link, piv.change_pin("123456", PIN))
    connection.disconnect()
    agent = AgentProcess(tmp_path, log_level="TRAFFIC")  # all, to prove no PIN
    agent.start()
    tokens = call(agent, "tokens/list")["result"]["tokens"]
    credential = f"{tokens[0]['id']}/9C"
    totp = asyncio.run(_enrol(agent, credential))
    return agent, credential, totp


async def _enrol(agent: AgentProcess, credential: str) -> pyotp.TOTP:
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"http://127.0.0.1:{agent.port}/v1/ws",
            headers={"Origin": PORTAL, "Host": f"127.0.0.1:{agent.port}"}) as ws:
        return await enrol_totp(ws, credential, PIN, agent.state_dir)


def _hashes(n: int, tag: str) -> list[str]:
    return [base64.b64encode(hashlib.sha256(f"{tag} {i}".encode()).digest()).decode()
            for i in range(n)]


def _journal(agent: AgentProcess) -> list[Any]:
    journal = SignatureJournal(agent.state_dir)
    try:
        return journal.entries()
    finally:
        journal.close()


def test_kill_between_authorisation_and_signature(simulated_card: RunningCard,
                                                  tmp_path: Path) -> None:
    agent, credential, totp = _setup(simulated_card, tmp_path)
    try:
        hashes = _hashes(3, "between")
        sad = call(agent, "credentials/authorize", {
            "credentialID": credential, "hashes": hashes, "PIN": PIN,
            "OTP": totp.now()})["result"]["SAD"]
        made = _journal(agent)
        assert len(made) == 3 and all(e.delivered_at is None for e in made)
        agent.kill()
        agent.start()
        first = call(agent, "signatures/signHash", {"credentialID": credential, "SAD": sad,
                                                    "hashes": hashes})
        assert len(first["result"]["signatures"]) == 3
        agent.kill()  # right after a delivery: the spent SAD is on disk (kill -9 safe)
        agent.start()
        second = call(agent, "signatures/signHash", {"credentialID": credential, "SAD": sad,
                                                     "hashes": hashes})
        assert second["error"]["data"]["error"] == "SAD_INVALID"
        after = _journal(agent)
        assert len(after) == 3, "signed twice"
        assert all(e.delivered_at is not None for e in after)
        assert [e.signature for e in after] == [e.signature for e in made]
    finally:
        agent.stop()
    assert PIN not in agent.log.read_text()
    assert PIN.encode().hex() not in agent.log.read_text()


def test_kill_during_a_signature(simulated_card: RunningCard, tmp_path: Path) -> None:
    simulated_card.restart_traced()
    agent, credential, totp = _setup(simulated_card, tmp_path)
    try:
        # Slow APDUs keep the batch going while the test sees it begin.
        simulated_card.control("latency 150")
        before = len(simulated_card.commands())

        async def authorize_and_kill() -> None:
            task = asyncio.create_task(_session_call(agent, "credentials/authorize", {
                "credentialID": credential, "hashes": _hashes(5, "during"), "PIN": PIN,
                "OTP": totp.now()}))
            # Mid-batch: the card has the first hash's GENERAL AUTHENTICATE, four to come.
            await asyncio.to_thread(
                wait_until, lambda: GENERAL_AUTHENTICATE_9C in simulated_card.commands()[before:],
                "the batch's first signature on the card")
            agent.kill()
            try:
                await task
            except (TimeoutError, aiohttp.ClientError, aiohttp.WSMessageTypeError,
                    ConnectionError):
                return
            raise AssertionError("the authorisation finished before the kill")

        asyncio.run(authorize_and_kill())
        simulated_card.control("latency 0")
        assert _journal(agent) == [], "a half-done batch left journal entries"
        retries = CardStore.load(simulated_card.state_path).state.pin.retries_left
        assert retries == 3, "the interrupted batch cost a PIN try"
        agent.start()
        hashes = _hashes(1, "after")
        sad = call(agent, "credentials/authorize", {
            "credentialID": credential, "hashes": hashes, "PIN": PIN,
            "OTP": totp.at(time.time() + 30)})["result"]["SAD"]
        signed = call(agent, "signatures/signHash", {"credentialID": credential, "SAD": sad,
                                                     "hashes": hashes})
        assert len(signed["result"]["signatures"]) == 1
        assert len(_journal(agent)) == 1
    finally:
        agent.stop()


def test_otp_throttling_survives_a_restart(simulated_card: RunningCard, tmp_path: Path) -> None:
    agent, credential, totp = _setup(simulated_card, tmp_path)
    try:
        wrong = "000000" if totp.now() != "000000" else "111111"
        codes = []
        for _ in range(5):
            reply = call(agent, "credentials/authorize", {
                "credentialID": credential, "hashes": _hashes(1, "t"), "PIN": PIN,
                "OTP": wrong})
            codes.append(reply["error"]["data"]["error"])
        assert "OTP_THROTTLED" in codes or codes[-1] == "INVALID_OTP"
        agent.kill()
        agent.start()
        reply = call(agent, "credentials/authorize", {
            "credentialID": credential, "hashes": _hashes(1, "t"), "PIN": PIN, "OTP": wrong})
        # The counters were on disk: still delayed after the restart, or, when the delay
        # ran out while the agent restarted (a loaded machine), this failure continues the
        # count and owes a delay; a fresh count lets its first failures go free. No clock.
        data = reply["error"]["data"]
        assert data["error"] in ("OTP_THROTTLED", "INVALID_OTP"), reply
        assert data.get("retryAfter", 0) > 0, reply
    finally:
        agent.stop()
