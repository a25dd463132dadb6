"""The agent's wire security and JSON-RPC framing, through real sockets on loopback
(SECURITY.md items 1-6, 10, 11, 14)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from agent.tokens.registry import TokenRegistry
from tests.support.agent_ws import PORTAL, Agent, rpc, with_agent
from tests.support.cli import run_qsign
from tests.support.pcsc import RunningCard
from tests.support.ports import free_port
from tests.support.waiting import DEADLINE, wait_until


def test_allowed_origin_talks_json_rpc(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        reply = await rpc(ws, "info")
        assert reply["result"]["name"] == "qsign agent"
        assert reply["result"]["origin"] == PORTAL
        assert (await rpc(ws, "tokens/list", request_id=2))["result"] == {"tokens": []}
        await ws.close()


NEAR_MISSES = [
    "https://portal.example.test.evil.example",  # suffix
    "http://portal.example.test",  # scheme
    "https://portal.example.test:443",  # explicit port
    "https://Portal.example.test",  # case
    "https://portal.example.test/",  # trailing slash
    "https://xn--portl-lsa.example.test",  # punycode look-alike
    "null",
    "",
]


@pytest.mark.parametrize("origin", NEAR_MISSES)
def test_near_miss_origins_are_refused_before_upgrade(tmp_path: Path, origin: str) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        assert await agent.status(origin) == 403


def test_missing_origin_is_refused(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        assert await agent.status(None) == 403


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:1", "localhost",
                                  "127.0.0.2:{port}", "[::2]:{port}", ""])
def test_foreign_host_headers_are_refused(tmp_path: Path, host: str) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        assert await agent.status(PORTAL, host.format(port=agent.config.port)) == 421
        for good in ("127.0.0.1", "localhost", "[::1]"):
            assert await agent.status(PORTAL, f"{good}:{agent.config.port}") == 101


def test_malformed_messages_get_errors_and_the_connection_survives(tmp_path: Path) -> None:
    @with_agent(tmp_path, max_message_bytes=4096)
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        cases: list[tuple[str, int]] = [
            ("not json", -32700),
            ("[1, 2]", -32600),
            ('{"jsonrpc": "1.0", "method": "info", "id": 1}', -32600),
            ('{"jsonrpc": "2.0", "method": "nope", "id": 1}', -32601),
            ('{"jsonrpc": "2.0", "method": "info", "params": {"x": 1}, "id": 1}', -32602),
            ('{"jsonrpc": "2.0", "method": "credentials/info", "params": {}, "id": 1}',
             -32602),
            ('{"jsonrpc": "2.0", "method": "info", "id": {"a": 1}}', -32600),
            ('{"jsonrpc": "2.0", "method": "info", "id": 1, "extra": 1}', -32600),
            ('{"a":' * 200 + "1" + "}" * 200, -32600),
            ('{"jsonrpc": "2.0", "method": "credentials/info", "params": '
             '{"credentialID": "x/9C"}, "id": 1}', -31010),
        ]
        for text, code in cases:
            await ws.send_str(text)
            reply = json.loads(await asyncio.wait_for(ws.receive_str(), DEADLINE))
            assert reply["error"]["code"] == code, (text[:40], reply)
            assert "Traceback" not in json.dumps(reply)
        await ws.send_bytes(b"\x00\x01")
        assert json.loads(await ws.receive_str())["error"]["code"] == -32600
        assert (await rpc(ws, "info"))["result"]["name"] == "qsign agent"
        # A frame over the cap closes this socket (1009) and nothing else.
        await ws.send_str(" " * 10_000)
        closing = await asyncio.wait_for(ws.receive(), DEADLINE)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        fresh = await agent.connect()
        assert (await rpc(fresh, "info"))["result"]["name"] == "qsign agent"
        await fresh.close()


def test_rate_limit_and_connection_cap(tmp_path: Path) -> None:
    @with_agent(tmp_path, requests_per_minute=60, max_connections=2)
    async def scenario(agent: Agent) -> None:
        first, second = await agent.connect(), await agent.connect()
        assert await agent.status() == 503
        codes = []
        for i in range(30):
            codes.append((await rpc(first, "info", request_id=i)).get("error", {}).get("code"))
        assert -31003 in codes and codes[0] is None
        await first.close()
        await second.close()


def test_pairing_approved_outside_the_page_then_revoked(tmp_path: Path) -> None:
    other = "https://other.example.test"

    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        assert await agent.status(other) == 403
        async with agent.session.post(
                agent.url + "/v1/pair", json={"jsonrpc": "2.0", "method": "pair/request",
                                               "id": 7},
                headers={"Origin": other, "Host": f"127.0.0.1:{agent.config.port}"}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == other
            reply = await resp.json()
        code = reply["result"]["code"]
        assert reply["result"]["paired"] is False and len(code.replace("-", "")) == 8
        config = tmp_path / "agent.toml"
        config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
        wrong = await asyncio.to_thread(run_qsign, "agent", "approve", "ZZZZ-ZZZZ", "--config",
                                        str(config))
        assert wrong.returncode == 2 and "no pairing request" in wrong.stderr
        approved = await asyncio.to_thread(run_qsign, "agent", "approve", code, "--config",
                                           str(config))
        assert approved.returncode == 0 and other in approved.stdout
        assert await agent.status(other) == 101
        again = await asyncio.to_thread(run_qsign, "agent", "approve", code, "--config",
                                        str(config))
        assert again.returncode == 2, "a code pairs once"
        listed = await asyncio.to_thread(run_qsign, "agent", "origins", "--config", str(config))
        assert other in listed.stdout
        revoked = await asyncio.to_thread(run_qsign, "agent", "origins", "--revoke", other,
                                          "--config", str(config))
        assert revoked.returncode == 0
        assert await agent.status(other) == 403


def test_tokens_and_events_from_the_simulated_card(simulated_card: RunningCard,
                                                   tmp_path: Path) -> None:
    @with_agent(tmp_path, registry=TokenRegistry())
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        tokens = (await rpc(ws, "tokens/list"))["result"]["tokens"]
        assert len(tokens) == 1 and tokens[0]["pinRetries"] == 3
        token_id = tokens[0]["id"]
        assert (await rpc(ws, "credentials/list", {"tokenID": token_id}, 2))["result"] == {
            "credentialIDs": [], "credentials": []}
        assert (await rpc(ws, "tokens/subscribe", request_id=3))["result"]["subscribed"]
        await asyncio.to_thread(simulated_card.remove)
        event = json.loads(await asyncio.wait_for(ws.receive_str(), DEADLINE))
        assert event["method"] == "tokens/event" and event["params"]["kind"] == "removed"
        await asyncio.to_thread(simulated_card.insert)
        event = json.loads(await asyncio.wait_for(ws.receive_str(), DEADLINE))
        assert event["params"]["kind"] == "inserted"
        assert event["params"]["tokenID"] == token_id
        await ws.close()


def test_agent_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nport = {port}\nstate_dir = "{tmp_path / "state"}"\n'
                      "pcsc = false\npkcs11_modules = []\n")
    process = subprocess.Popen([sys.executable, "-m", "qsign", "agent", "run", "--config",
                                str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"port {port}" in line, line
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                                   text=True, check=True).stdout.split()
        addresses = {w.rsplit(":", 1)[0] for w in listening if w.endswith(f":{port}")}
        assert addresses and addresses <= {"127.0.0.1", "[::1]"}, listening
    finally:
        process.terminate()
        process.wait(10)
    wait_until(lambda: not subprocess.run(["ss", "-Hltn", f"sport = :{port}"],
                                          capture_output=True, text=True).stdout.strip(),
               "no listener left after the agent stopped")


def test_unknown_config_keys_are_named(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nport = 1\nallowed_origns = ["https://x"]\n')
    result = run_qsign("agent", "origins", "--config", str(config))
    assert result.returncode == 2 and "agent.allowed_origns" in result.stderr
    config.write_text('[agent]\nallowed_origins = ["https://x/path"]\n')
    result = run_qsign("agent", "origins", "--config", str(config))
    assert result.returncode == 2 and "allowed_origins[0]" in result.stderr



def test_pairing_requests_are_rate_limited(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        statuses = []
        for _ in range(6):
            async with agent.session.post(
                    agent.url + "/v1/pair",
                    json={"jsonrpc": "2.0", "method": "pair/request", "id": 1},
                    headers={"Origin": "https://flood.example.test",
                             "Host": f"127.0.0.1:{agent.config.port}"}) as resp:
                statuses.append(resp.status)
        # A limit still holding: the bucket (burst 3) refills one request per 10 s of the
        # agent's monotonic clock, which the test cannot set; six requests take far less.
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
