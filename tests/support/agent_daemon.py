"""`qsign agent run` as a real process: config files, an isolated environment (no real
/etc/qsign policy, no ~/.config), health polling, clean stop; `AgentProcess` puts them
together for one agent."""

from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import ports
from tests.support.agent_ws import PORTAL
from tests.support.cli import run_qsign
from tests.support.waiting import DEADLINE

QSIGN = [sys.executable, "-m", "qsign.cli"]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1 (the agent listens on both)."""
    return ports.free_port(ipv6=True)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_toml(path: Path, agent: dict[str, Any], locked: Sequence[str] | None = None) -> Path:
    lines = []
    if locked is not None:
        lines += ["[policy]", f"locked = {toml_value(list(locked))}"]
    lines.append("[agent]")
    lines += [f"{key} = {toml_value(value)}" for key, value in agent.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def isolated_env(home: Path, policy: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LISTEN_", "NOTIFY_SOCKET", "STATE_DIRECTORY", "QSIGN_"))}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "QSIGN_AGENT_POLICY": str(policy or home / "no-policy.toml"),
                "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def http_get(port: int, path: str, address: str = "127.0.0.1", timeout: float = 5.0
             ) -> tuple[int, dict[str, str], bytes]:
    host = f"[{address}]" if ":" in address else address
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": f"{host}:{port}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def wait_health(port: int, process: subprocess.Popen[str] | None = None,
                address: str = "127.0.0.1", timeout: float = DEADLINE) -> dict[str, Any]:
    """Poll /v1/health until it answers (no timing is asserted: only that it comes)."""
    last: Exception | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the agent exited ({process.returncode}):\n"
                               f"{process.stdout.read() if process.stdout else ''}")
        try:
            status, _, body = http_get(port, "/v1/health", address, timeout=5)
            if status == 200:
                health: dict[str, Any] = json.loads(body)
                return health
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"no health answer on {address}:{port} in {timeout:g} s: {last}")


def listening(port: int) -> list[str]:
    """Local addresses with a TCP listener on `port` (from `ss`, every namespace-local one)."""
    out = subprocess.run(["ss", "-Htln", f"sport = :{port}"], check=True,
                         capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, then its output; SIGKILL only if it does not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout else ""


class AgentProcess:
    """One `qsign agent run` process: its config file (from `settings`, rewritten by
    `write_config`), an isolated environment, its output in a log file (an unread pipe
    that fills up would stall the agent), at most `nofile` descriptors when given."""

    def __init__(self, tmp_path: Path, *, nofile: int | None = None,
                 log_level: str | None = None, **settings: Any) -> None:
        self.port = free_port()
        self.home = tmp_path / "home"
        self.state_dir = tmp_path / "state"
        self.config = tmp_path / "agent.toml"
        self.log = tmp_path / "agent.log"
        self.settings = {"port": self.port, "state_dir": str(self.state_dir),
                         "allowed_origins": [PORTAL], "pkcs11_modules": [], **settings}
        extra = {} if log_level is None else {"QSIGN_LOG_LEVEL": log_level}
        self.env = isolated_env(self.home, **extra)
        self.nofile = nofile
        self.process: subprocess.Popen[str] | None = None
        self.write_config()

    def write_config(self, **changes: Any) -> None:
        self.settings.update(changes)
        write_toml(self.config, self.settings)

    def start(self) -> None:
        """Start it and wait for its /v1/health."""
        nofile = self.nofile

        def limit() -> None:  # in the child, before exec: fewer descriptors
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [*QSIGN, "agent", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT, text=True, env=self.env, preexec_fn=limit)
        try:
            wait_health(self.port, self.process)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()}") from None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a power cut, as the agent sees it)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> str:
        """SIGTERM (SIGKILL if it does not go), then its log so far."""
        if self.process is not None:
            stop(self.process)
        return self.log.read_text() if self.log.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`qsign agent ARGS... --config` this agent's file, in its environment."""
        return run_qsign("agent", *args, "--config", str(self.config), env=self.env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def running(agent: AgentProcess) -> Iterator[AgentProcess]:
    """`agent` started for the block, then stopped; its log printed (pytest shows it when
    the test failed)."""
    agent.start()
    try:
        yield agent
    finally:
        output = agent.stop()
        print(output[-20_000:])
