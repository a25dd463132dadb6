"""/v1/health details and the opt-in Prometheus /metrics: signatures, failures by code,
token events and latency histograms, counted from real signatures on the simulated
card behind pcscd."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

import pytest

from agent.tokens.registry import TokenRegistry
from ground import __version__
from tests.integration.test_agent_signing import PIN, _credential, _enrol_totp, _provisioned
from tests.support.agent_ws import Agent, rpc, with_agent
from tests.support.pcsc import RunningCard
from tests.support.waiting import wait_until_async

_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})?'
    r' (?P<value>[-+]?(?:\d+(?:\.\d+)?(?:e[-+]?\d+)?|Inf|NaN))$')


def parse_exposition(text: str) -> dict[str, float]:
    """Text format 0.0.4, strictly: every line a HELP, a TYPE or a sample; each sample's
    family typed before it. Returns {'name{labels}': value}."""
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert name not in typed, f"{name} typed twice"
            typed[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or typed.get(family) == "histogram", f"untyped: {line}"
        key = f"{name}{{{match['labels']}}}" if match["labels"] else name
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(match["value"].replace("Inf", "inf"))
    return samples


async def _get(agent: Agent, path: str, host: str | None = None
               ) -> tuple[int, str, str]:
    headers = {"Host": host or f"127.0.0.1:{agent.config.port}"}
    async with agent.session.get(agent.url + path, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_health_says_what_the_agent_is_without_personal_data(tmp_path: Path) -> None:
    @with_agent(tmp_path)
    async def scenario(agent: Agent) -> None:
        async with agent.session.get(agent.url + "/v1/health", headers={
                "Host": f"127.0.0.1:{agent.config.port}"}) as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers
            health = await response.json()
        assert health["status"] == "ok" and health["version"] == __version__
        assert re.fullmatch(r"[0-9a-f]{32}", health["id"])
        assert health["tokens"] == 0 and health["connections"] == 0
        assert health["metrics"] is False and health["discovery"] is False
        assert health["uptime_seconds"] >= 0
        # the id is the agent's, kept across restarts in its state directory
        assert (agent.config.state_dir / "agent-id").read_text().strip() == health["id"]
        ws = await agent.connect()
        _, _, text = await _get(agent, "/v1/health")
        assert '"connections": 1' in text
        await ws.close()
        # metrics are opt-in: no route at all when off
        assert (await _get(agent, "/metrics"))[0] == 404


def test_metrics_count_real_signatures_failures_and_token_events(
        simulated_card: RunningCard, tmp_path: Path) -> None:
    _provisioned(simulated_card)

    @with_agent(tmp_path, registry=TokenRegistry(), metrics=True)
    async def scenario(agent: Agent) -> None:
        status, content_type, text = await _get(agent, "/metrics")
        assert status == 200
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        first = parse_exposition(text)
        assert first[f'qsign_agent_info{{version="{__version__}"}}'] == 1
        assert first['qsign_agent_token_events_total{event="inserted"}'] == 1
        assert first["qsign_agent_tokens"] == 1

        ws = await agent.connect()
        credential = await _credential(agent, ws)
        totp = await _enrol_totp(ws, credential, agent.config.state_dir)
        digests = [_b64(hashlib.sha256(f"doc {i}".encode()).digest()) for i in range(2)]
        wrong = await rpc(ws, "credentials/authorize", {
            "credentialID": credential, "hashes": digests, "PIN": PIN,
            "OTP": "000000" if totp.now() != "000000" else "111111"}, 2)
        assert wrong["error"]["data"]["error"] == "INVALID_OTP"
        bad_pin = await rpc(ws, "credentials/authorize", {
            "credentialID": credential, "hashes": digests, "PIN": "999999",
            "OTP": totp.now()}, 3)
        assert bad_pin["error"]["data"]["error"] == "INVALID_PIN"
        good = await rpc(ws, "credentials/authorize", {
            "credentialID": credential, "hashes": digests, "PIN": PIN,
            "OTP": totp.at(time.time() + 30)}, 4)
        sad = good["result"]["SAD"]
        signed = await rpc(ws, "signatures/signHash", {
            "credentialID": credential, "SAD": sad, "hashes": digests}, 5)
        assert len(signed["result"]["signatures"]) == 2
        await ws.close()
        # A refused Host is counted too (the metrics middleware is outermost).
        assert (await _get(agent, "/v1/health", host="evil.example"))[0] == 421

        simulated_card.remove()

        async def removal_counted() -> dict[str, float]:
            found = parse_exposition((await _get(agent, "/metrics"))[2])
            return found if found.get('qsign_agent_token_events_total{event="removed"}') else {}

        samples = await wait_until_async(removal_counted, "the removal in /metrics")
        assert samples['qsign_agent_token_events_total{event="removed"}'] == 1
        assert samples["qsign_agent_tokens"] == 0
        op = 'operation="credentials/authorize"'
        assert samples[f"qsign_agent_signatures_total{{{op}}}"] == 2
        assert samples[f"qsign_agent_operations_total{{{op}}}"] == 3
        assert samples[f'qsign_agent_failures_total{{{op},code="INVALID_OTP"}}'] == 1
        assert samples[f'qsign_agent_failures_total{{{op},code="INVALID_PIN"}}'] == 1
        assert samples['qsign_agent_operations_total{operation="signatures/signHash"}'] == 1
        assert 'qsign_agent_failures_total{operation="signatures/signHash"' not in "".join(
            samples)
        # histogram: cumulative buckets ending in +Inf == count, sum > 0
        count = samples[f"qsign_agent_operation_duration_seconds_count{{{op}}}"]
        assert count == 3
        assert samples[f'qsign_agent_operation_duration_seconds_bucket{{{op},le="+Inf"}}'] \
            == count
        buckets = [v for k, v in samples.items()
                   if k.startswith(f"qsign_agent_operation_duration_seconds_bucket{{{op}")]
        assert buckets == sorted(buckets)
        assert samples[f"qsign_agent_operation_duration_seconds_sum{{{op}}}"] > 0
        assert samples['qsign_agent_http_requests_total{route="/v1/ws",status="101"}'] >= 1
        assert samples['qsign_agent_http_requests_total{route="/v1/health",'
                       'status="421"}'] == 1
        assert samples['qsign_agent_http_request_duration_seconds_count{'
                       'route="/metrics"}'] >= 1  # the earlier scrapes
        # no personal data in any label: no origin, no credential, no token id
        text = (await _get(agent, "/metrics"))[2]
        for secret in (credential, credential.split("/")[0], "example.test", PIN):
            assert secret not in text



def test_metrics_answer_only_on_our_loopback_host(tmp_path: Path) -> None:
    @with_agent(tmp_path, metrics=True)
    async def scenario(agent: Agent) -> None:
        assert (await _get(agent, "/metrics", host="evil.example:80"))[0] == 421
        assert (await _get(agent, "/metrics", host=f"[::1]:{agent.config.port}"))[0] == 200
        async with agent.session.get(agent.url + "/metrics", headers={
                "Host": f"localhost:{agent.config.port}"}) as response:
            assert response.headers["Cache-Control"] == "no-store"


def test_exposition_escapes_labels_and_keeps_histograms_cumulative() -> None:
    from agent.metrics import AgentMetrics, Counter, Histogram

    counter = Counter("c_total", "help", ("what",))
    counter.inc('a "quoted"\\ value\nnext', amount=2)
    assert list(counter.render())[2] == 'c_total{what="a \\"quoted\\"\\\\ value\\nnext"} 2'
    histogram = Histogram("h_seconds", "help", ("op",), buckets=(0.1, 1.0))
    for seconds in (0.05, 0.5, 0.5, 7.0):
        histogram.observe(seconds, "x")
    lines = list(histogram.render())[2:]
    assert lines == ['h_seconds_bucket{op="x",le="0.1"} 1', 'h_seconds_bucket{op="x",le="1"} 3',
                     'h_seconds_bucket{op="x",le="+Inf"} 4', 'h_seconds_sum{op="x"} 8.05',
                     'h_seconds_count{op="x"} 4']
    metrics = AgentMetrics("9.9")
    metrics.failures.inc("op", "INVALID_PIN")
    parsed = parse_exposition(metrics.render())
    assert parsed['qsign_agent_failures_total{operation="op",code="INVALID_PIN"}'] == 1
    with pytest.raises(ValueError, match="labels"):
        counter.inc("a", "b")
