"""The agent's own pairing page (agent/protocol/approve.py) over real loopback HTTP:
it approves with the per-start secret from the agent's own origin, and refuses every
request a web page could make (no or wrong secret, a foreign or missing Origin, a
cross-site fetch, no CORS grant to anyone)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent.protocol.approve import HEADER, SECRET_FILE, approval_url, read_secret
from tests.support.agent_ws import PORTAL, Agent, with_agent
from tests.support.cli import run_qsign

ASKING = "https://newsite.example.test"


async def _ask_pairing(agent: Agent, origin: str = ASKING) -> str:
    async with agent.session.post(agent.url + "/v1/pair", headers=_host(agent, Origin=origin),
                                  data=json.dumps({"jsonrpc": "2.0", "id": 1,
                                                   "method": "pair/request"})) as answer:
        code: str = (await answer.json())["result"]["code"]
        return code


def _host(agent: Agent, **headers: str) -> dict[str, str]:
    return {"Host": f"127.0.0.1:{agent.config.port}", **headers}


def _own(agent: Agent) -> str:
    return f"http://127.0.0.1:{agent.config.port}"


async def _decide(agent: Agent, headers: dict[str, str], body: Any = None,
                  raw: str | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else json.dumps(body)
    async with agent.session.post(agent.url + "/v1/approve/decide", data=data,
                                  headers=_host(agent, **headers)) as answer:
        return answer.status, dict(answer.headers), await answer.json(content_type=None)


def test_the_secret_file_and_the_url(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        path = agent.config.state_dir / SECRET_FILE
        assert path.stat().st_mode & 0o777 == 0o600
        assert (agent.config.state_dir.stat().st_mode & 0o777) == 0o700
        secret = read_secret(agent.config.state_dir)
        assert secret is not None and len(secret) >= 43
        assert approval_url(agent.config.port, secret).endswith(f"/v1/approve#{secret}")
        config = tmp_path / "agent.toml"
        config.write_text(f'[agent]\nport = {agent.config.port}\n'
                          f'state_dir = "{agent.config.state_dir}"\n')
        printed = await asyncio.to_thread(run_qsign, "agent", "approve", "--open",
                                          "--config", str(config))
        assert printed.returncode == 0, printed.stderr
        assert approval_url(agent.config.port, secret) in printed.stdout
        async with agent.session.get(agent.url + "/v1/approve",
                                     headers=_host(agent)) as answer:
            assert answer.status == 200
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert "Access-Control-Allow-Origin" not in answer.headers
            assert secret not in await answer.text()

    scenario_dir = tmp_path / "state"
    assert not (scenario_dir / SECRET_FILE).exists(), "the secret outlived the agent"
    stopped = run_qsign("agent", "approve", "--open", "--config", str(tmp_path / "agent.toml"))
    assert stopped.returncode != 0 and "not running" in stopped.stderr


def agent_state_paired(agent: Agent) -> list[str]:
    from agent.state import AgentState

    state = AgentState(agent.config.state_dir)
    try:
        return [p.origin for p in state.paired()]
    finally:
        state.close()


def test_approve_and_deny_with_the_secret_from_the_own_origin(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        secret = read_secret(agent.config.state_dir) or ""
        first, second = await _ask_pairing(agent), await _ask_pairing(agent, "https://b.test")
        own = {HEADER: secret, "Origin": _own(agent), "Content-Type": "application/json",
               "Sec-Fetch-Site": "same-origin"}
        async with agent.session.get(agent.url + "/v1/approve/pending", headers=_host(
                agent, **{HEADER: secret})) as answer:
            listed = (await answer.json())["pending"]
        assert {p["origin"] for p in listed} == {ASKING, "https://b.test"}
        status, _, reply = await _decide(agent, own, {"code": second, "action": "deny"})
        assert (status, reply) == (200, {"origin": "https://b.test", "paired": False,
                                    "kind": "pairing"})
        status, _, reply = await _decide(agent, own, {"code": first, "action": "approve"})
        assert (status, reply) == (200, {"origin": ASKING, "paired": True, "kind": "pairing"})
        assert agent_state_paired(agent) == [ASKING]
        status, _, reply = await _decide(agent, own, {"code": first, "action": "approve"})
        assert status == 404 and reply["error"] == "PAIRING_CODE"
        status, _, reply = await _decide(agent, own, {"code": first})
        assert status == 400
        status, _, reply = await _decide(agent, {**own, "Content-Type": "text/plain"},
                                         {"code": first, "action": "approve"})
        assert status == 400


def test_refusals(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        secret = read_secret(agent.config.state_dir) or ""
        code = await _ask_pairing(agent)
        body = {"code": code, "action": "approve"}
        good = {HEADER: secret, "Origin": _own(agent), "Content-Type": "application/json"}
        refusals: list[dict[str, str]] = [
            {k: v for k, v in good.items() if k != HEADER},  # no secret
            {**good, HEADER: secret[:-1] + ("A" if secret[-1] != "A" else "B")},  # wrong
            {**good, "Origin": ASKING},  # the asking page itself, even with the secret
            {**good, "Origin": PORTAL},  # an allowed origin is not the agent
            {**good, "Origin": "null"},
            {**good, "Origin": f"http://127.0.0.1:{agent.config.port + 1}"},  # near miss
            {k: v for k, v in good.items() if k != "Origin"},  # no Origin on a write
            {**good, "Sec-Fetch-Site": "cross-site"},
            {**good, "Sec-Fetch-Site": "same-site"},
        ]
        for headers in refusals:
            status, answer_headers, reply = await _decide(agent, headers, body)
            assert status == 403, headers
            assert reply["error"] == "ORIGIN_NOT_ALLOWED"
            assert not any(h.startswith("Access-Control") for h in answer_headers)
        for headers in ({}, {HEADER: "wrong"}, {HEADER: secret, "Origin": ASKING}):
            async with agent.session.get(agent.url + "/v1/approve/pending",
                                         headers=_host(agent, **headers)) as answer:
                assert answer.status == 403
        # A CORS preflight is never granted.
        async with agent.session.options(agent.url + "/v1/approve/decide", headers=_host(
                agent, Origin=ASKING, **{"Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": HEADER})) as answer:
            assert "Access-Control-Allow-Origin" not in answer.headers
        # DNS rebinding: the right secret and Origin under a foreign Host.
        async with agent.session.post(agent.url + "/v1/approve/decide", data=json.dumps(body),
                                      headers={**good, "Host": "evil.example.test"}) as answer:
            assert answer.status == 421
        from agent.state import AgentState

        state = AgentState(agent.config.state_dir)
        try:
            assert state.paired() == [], "a refused request paired an origin"
            assert [c for c, _ in state.pending()] == [code.replace("-", "")]
        finally:
            state.close()
