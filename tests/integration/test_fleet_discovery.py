"""Zeroconf fleet discovery with real agents in network namespaces made by the test:
two agents on one loopback with multicast on, then two agents in two namespaces
joined by a veth pair, each finding the other with `qsign fleet discover`."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SoftHsm
from tests.support.agent_daemon import QSIGN, isolated_env, stop, write_toml
from tests.support.pcsc import RunningCard
from tests.support.waiting import DEADLINE


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"ip {' '.join(args)}: {result.stderr.strip()} (needs root and iproute2)",
                    pytrace=False)


@dataclass
class Namespace:
    name: str

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], env=env, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        # `ip netns exec` execs the command: the pid is the agent's own.
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def make_namespace() -> Iterator[Any]:
    made: list[str] = []

    def make() -> Namespace:
        name = f"qsign-{uuid.uuid4().hex[:10]}"
        _ip("netns", "add", name)
        made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return Namespace(name)

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@dataclass
class FleetAgent:
    process: subprocess.Popen[str]
    state_dir: Path
    port: int

    @property
    def id(self) -> str:
        return (self.state_dir / "agent-id").read_text().strip()


def _start_agent(ns: Namespace, home: Path, port: int, interfaces: list[str] | None,
                 **settings: Any) -> FleetAgent:
    """An agent in `ns`; `interfaces` None: no policy (discovery stays off)."""
    policy = None
    if interfaces is not None:
        policy = write_toml(home / "policy.toml", {
            "discovery": True, "discovery_interfaces": interfaces}, locked=["discovery"])
    state = home / "state"
    config = write_toml(home / "agent.toml", {
        "port": port, "state_dir": str(state), "pcsc": False, "pkcs11_modules": [],
        **settings})
    process = ns.start([*QSIGN, "agent", "run", "--config", str(config)],
                       isolated_env(home, policy))
    agent = FleetAgent(process, state, port)
    # Ready once it prints where it listens (health is only reachable inside the ns).
    assert process.stdout is not None
    line = process.stdout.readline()
    if "qsign agent on" not in line:
        pytest.fail(f"agent did not start: {line}{stop(process)}", pytrace=False)
    return agent


def _discover(ns: Namespace, home: Path, interface: str, expected: int,
              until: Callable[[list[dict[str, Any]]], bool] = lambda found: True
              ) -> list[dict[str, Any]]:
    """`qsign fleet discover --json` in `ns`, retried until `expected` agents answer and
    `until` holds, or the deadline passes: the caller's assertion then shows what answered
    (mDNS probing and announcing take their own time; no timing is asserted)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = ns.run([*QSIGN, "fleet", "discover", "--interface", interface,
                         "--timeout", "3", "--json"], isolated_env(home))
        assert result.returncode == 0, result.stderr
        found: list[dict[str, Any]] = json.loads(result.stdout)
        if (len(found) >= expected and until(found)) or time.monotonic() > deadline:
            return found


def _check_private(agent: dict[str, Any], fleet_agent: FleetAgent) -> None:
    assert agent["name"] == f"qsign-{fleet_agent.id[:16]}._qsign._tcp.local."
    assert socket.gethostname() not in json.dumps(agent)
    assert set(agent) == {"id", "version", "tokens", "health", "addresses", "port", "name"}


def test_two_agents_on_loopback_multicast_find_each_other(
        make_namespace: Any, tmp_path: Path, softhsm: SoftHsm,
        simulated_card: RunningCard) -> None:
    ns = make_namespace()
    _ip("-n", ns.name, "link", "set", "lo", "multicast", "on")
    # a sees the simulated card through the test's pcscd (a Unix socket: any netns)
    a = _start_agent(ns, tmp_path / "a", 35801, ["127.0.0.1"], pcsc=True)
    # b has a token (SoftHSM2 via PKCS#11): its TXT record says so
    b = _start_agent(ns, tmp_path / "b", 35802, ["lo"], pkcs11_modules=[str(softhsm.module)])
    quiet = _start_agent(ns, tmp_path / "quiet", 35803, None)  # no policy: not advertised
    try:
        found = _discover(ns, tmp_path, "127.0.0.1", 2)
        by_id = {agent["id"]: agent for agent in found}
        assert set(by_id) == {a.id, b.id}, found
        assert quiet.id not in by_id
        assert by_id[a.id]["port"] == 35801 and by_id[b.id]["port"] == 35802
        assert by_id[a.id]["tokens"] == 1 and by_id[b.id]["tokens"] == 1
        for fleet_agent in (a, b):
            agent = by_id[fleet_agent.id]
            assert agent["health"] == "ok" and agent["addresses"] == ["127.0.0.1"]
            _check_private(agent, fleet_agent)
        text = ns.run([*QSIGN, "fleet", "discover", "--interface", "lo", "--timeout", "3"],
                      isolated_env(tmp_path))
        assert a.id in text.stdout and "port 35801" in text.stdout, text.stdout + text.stderr
        # The TXT record follows the tokens: the card leaves, a's count drops.
        simulated_card.remove()
        after = _discover(ns, tmp_path, "127.0.0.1", 2,
                          until=lambda found: {x["id"]: x["tokens"] for x in found}.get(a.id) == 0)
        assert {x["id"]: x["tokens"] for x in after} == {a.id: 0, b.id: 1}
        # A stopped agent says goodbye (TTL 0) and drops out of the list.
        stop(b.process)
        later = _discover(ns, tmp_path, "127.0.0.1", 1)
        assert [agent["id"] for agent in later] == [a.id]
    finally:
        for running in (a, b, quiet):
            stop(running.process)


def test_agents_in_two_namespaces_discover_each_other_over_a_veth_link(
        make_namespace: Any, tmp_path: Path) -> None:
    left, right = make_namespace(), make_namespace()
    veth = f"qv{uuid.uuid4().hex[:8]}"
    _ip("link", "add", f"{veth}a", "netns", left.name, "type", "veth", "peer", "name",
        f"{veth}b", "netns", right.name)
    for ns, device, address in ((left, f"{veth}a", "10.213.7.1"),
                                (right, f"{veth}b", "10.213.7.2")):
        _ip("-n", ns.name, "addr", "add", f"{address}/24", "dev", device)
        _ip("-n", ns.name, "link", "set", device, "up")
    # Same port in both: separate namespaces, separate loopbacks.
    a = _start_agent(left, tmp_path / "a", 35741, [f"{veth}a"])
    b = _start_agent(right, tmp_path / "b", 35741, ["10.213.7.2"])
    try:
        from_left = {x["id"]: x for x in _discover(left, tmp_path, "10.213.7.1", 2)}
        from_right = {x["id"]: x for x in _discover(right, tmp_path, f"{veth}b", 2)}
        assert set(from_left) == set(from_right) == {a.id, b.id}
        assert from_left[b.id]["addresses"] == ["10.213.7.2"]
        assert from_right[a.id]["addresses"] == ["10.213.7.1"]
        for agent, fleet_agent in ((from_left[b.id], b), (from_right[a.id], a)):
            assert agent["health"] == "ok" and agent["port"] == 35741
            _check_private(agent, fleet_agent)
    finally:
        for running in (a, b):
            stop(running.process)


def test_discovery_without_a_usable_interface_is_a_clean_error(
        make_namespace: Any, tmp_path: Path) -> None:
    ns = make_namespace()
    result = ns.run([*QSIGN, "fleet", "discover", "--interface", "nosuch0", "--timeout", "1"],
                    isolated_env(tmp_path))
    assert result.returncode == 2
    assert "qsign: error: interface 'nosuch0' has no IPv4 address" in result.stderr
    assert "Traceback" not in result.stderr
