"""The systemd units: offline security analysis (exposure <= 2.0 for the system unit),
`systemd-analyze verify`, and socket activation through the real sd_listen_fds
protocol (systemd-socket-activate), with READY=1 / STOPPING=1 on $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SoftHsm
from tests.integration.test_agent_signing import PIN, _enrol_totp, _provisioned
from tests.support.agent_daemon import (
    QSIGN,
    free_port,
    isolated_env,
    listening,
    stop,
    wait_health,
    write_toml,
)
from tests.support.agent_ws import PORTAL, rpc
from tests.support.pcsc import RunningCard
from tests.support.waiting import wait_until

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SYSTEM_UNITS = ("qsign-agent.service", "qsign-agent.socket")
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=qsign-agent",
             "PrivateTmp=yes", "ProtectHome=yes",
             "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
             "SystemCallArchitectures=native", "LockPersonality=yes", "RestrictNamespaces=yes")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing (Debian package systemd; run 'make setup')",
                    pytrace=False)
    return path


def _analyze(*args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("systemd-analyze"), *args], capture_output=True, text=True,
                          env=env, check=False)


def exposure(unit: Path, *, user: bool = False, env: dict[str, str] | None = None) -> float:
    result = _analyze(*(["--user"] if user else []), "security", "--offline=true",
                      "--no-pager", str(unit), env=env)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_the_system_unit_is_hardened_to_an_exposure_of_at_most_2() -> None:
    unit = UNITS / "system" / "qsign-agent.service"
    text = unit.read_text()
    for directive in HARDENING:
        assert re.search(rf"^{re.escape(directive)}$", text, re.M), directive
    score = exposure(unit)
    print(f"systemd-analyze security --offline=true: exposure {score}")
    assert score <= 2.0


def test_the_exposure_check_can_fail(tmp_path: Path) -> None:
    """The same analysis on the unit without its hardening scores far worse."""
    bare = tmp_path / "qsign-agent.service"
    kept = [line for line in (UNITS / "system" / "qsign-agent.service").read_text().splitlines()
            if not line.startswith(("Protect", "Private", "Restrict", "System", "NoNew",
                                    "Capability", "Lock", "Memory", "DynamicUser", "UMask",
                                    "Device", "Keyring", "RemoveIPC", "Ambient", "ProcSubset"))]
    bare.write_text("\n".join(kept) + "\n")
    assert exposure(bare) > 5.0


def _unit_root(tmp_path: Path, unit_dir: str) -> Path:
    """A root with the host's units, ours, and an executable /usr/bin/qsign: verify
    resolves dependencies (sysinit.target ...) and ExecStart= inside it."""
    root = tmp_path / "root"
    target = root / "usr" / "lib" / "systemd" / unit_dir
    shutil.copytree(Path("/usr/lib/systemd") / unit_dir, target, symlinks=True)
    for path in (UNITS / ("system" if unit_dir == "system" else "user")).iterdir():
        shutil.copy(path, target / path.name)
    qsign = root / "usr" / "bin" / "qsign"
    qsign.parent.mkdir(parents=True)
    qsign.write_text("#!/bin/sh\nexit 0\n")
    qsign.chmod(0o755)
    return root


def test_system_units_verify_cleanly(tmp_path: Path) -> None:
    root = _unit_root(tmp_path, "system")
    units = [f"/usr/lib/systemd/system/{name}" for name in SYSTEM_UNITS]
    result = _analyze("verify", f"--root={root}", *units)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # and verify does fail on a broken unit
    broken = root / "usr" / "lib" / "systemd" / "system" / "qsign-agent.service"
    broken.write_text(broken.read_text().replace("ExecStart=/usr/bin/qsign",
                                                 "ExecStart=/usr/bin/qsign-missing"))
    result = _analyze("verify", f"--root={root}", units[0])
    assert result.returncode != 0 and "qsign-missing" in result.stderr


def test_user_units_verify_cleanly(tmp_path: Path) -> None:
    """A user manager takes no --root: the units are checked from a copy whose ExecStart
    names an executable that exists here (the only line changed)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = isolated_env(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    stub = tmp_path / "qsign"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for name in SYSTEM_UNITS:
        text = (UNITS / "user" / name).read_text()
        assert text.count("ExecStart=/usr/bin/qsign ") <= 1
        copy = tmp_path / name
        copy.write_text(text.replace("ExecStart=/usr/bin/qsign ", f"ExecStart={stub} "))
        copies.append(str(copy))
    result = _analyze("--user", "verify", *copies, env=env)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    user_score = exposure(tmp_path / "qsign-agent.service", user=True, env=env)
    print(f"user unit exposure {user_score}")
    assert user_score < 9.0  # hardened beyond an unconfined unit (9.6)


def test_sockets_listen_on_loopback_only() -> None:
    for kind in ("system", "user"):
        text = (UNITS / kind / "qsign-agent.socket").read_text()
        listens = re.findall(r"^ListenStream=(.+)$", text, re.M)
        assert listens == ["127.0.0.1:35741", "[::1]:35741"], (kind, listens)


def _activate(port: int, addresses: list[str], config: Path, env: dict[str, str]
              ) -> subprocess.Popen[str]:
    """systemd-socket-activate gives the child only LISTEN_* and the -E variables."""
    passed = [f"-E{key}={env[key]}" for key in sorted(env)
              if key in ("HOME", "PATH", "PYTHONPATH", "NOTIFY_SOCKET", "PYTHONUNBUFFERED")
              or key.startswith(("XDG_", "QSIGN_"))]
    listen = [arg for address in addresses for arg in ("-l", f"{address}:{port}")]
    return subprocess.Popen(
        [_tool("systemd-socket-activate"), *listen, *passed, *QSIGN, "agent", "run",
         "--config", str(config)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(60)
    return sock


def test_socket_activation_serves_on_the_passed_loopback_sockets(tmp_path: Path) -> None:
    port = free_port()
    config = write_toml(tmp_path / "agent.toml", {
        "port": port, "state_dir": str(tmp_path / "state"), "pcsc": False,
        "pkcs11_modules": []})
    notify = _notify_socket(tmp_path)
    env = isolated_env(tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    process = _activate(port, ["127.0.0.1", "[::1]"], config, env)
    try:
        # systemd-socket-activate starts the agent on the first connection.
        health = wait_health(port, process)
        assert health["status"] == "ok"
        assert wait_health(port, process, address="::1")["id"] == health["id"]
        assert notify.recv(256) == b"READY=1"
        assert sorted(listening(port)) == sorted([f"127.0.0.1:{port}", f"[::1]:{port}"])
    finally:
        output = stop(process)
    assert "(socket activation)" in output, output
    assert notify.recv(256) == b"STOPPING=1"
    assert listening(port) == []
    notify.close()


def test_socket_activation_refuses_a_non_loopback_socket(tmp_path: Path) -> None:
    port = free_port()
    config = write_toml(tmp_path / "agent.toml", {
        "port": port, "state_dir": str(tmp_path / "state"), "pcsc": False,
        "pkcs11_modules": []})
    # An all-interfaces socket passed in must be refused (SECURITY #5).
    process = _activate(port, ["0.0.0.0"], config, isolated_env(tmp_path))  # noqa: S104
    try:
        wait_until(lambda: listening(port), "systemd-socket-activate listening")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.settimeout(60)
            try:
                data = client.recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b""  # closed unanswered: the agent refused to serve
        assert process.wait(timeout=60) == 2
    finally:
        output = stop(process)
    assert "bound to 0.0.0.0, not loopback" in output, output


_MDWE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
# PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN (1): Linux 6.3+, kept across execve
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit("PR_SET_MDWE: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_the_agent_signs_under_memory_deny_write_execute(
        simulated_card: RunningCard, softhsm: SoftHsm, tmp_path: Path) -> None:
    """Both units set MemoryDenyWriteExecute=yes. The kernel's own W^X switch
    (PR_SET_MDWE, what the unit asks of seccomp) on a real agent process: pyscard,
    python-pkcs11 with SoftHSM2, cryptography and the card signature all still work."""
    probe = subprocess.run(
        [sys.executable, "-c", _MDWE, sys.executable, "-c",
         "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | "
         "mmap.PROT_EXEC)"], capture_output=True, text=True, check=False)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, "W^X is not on"
    _provisioned(simulated_card)
    port = free_port()
    config = write_toml(tmp_path / "agent.toml", {
        "port": port, "state_dir": str(tmp_path / "state"),
        "pkcs11_modules": [str(softhsm.module)], "allowed_origins": [PORTAL]})
    process = subprocess.Popen(
        [sys.executable, "-c", _MDWE, sys.executable, "-m", "qsign.cli", "agent", "run",
         "--config", str(config)], env=isolated_env(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_health(port, process)["status"] == "ok"

        async def scenario() -> None:
            headers = {"Host": f"127.0.0.1:{port}", "Origin": PORTAL}
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    f"http://127.0.0.1:{port}/v1/ws", headers=headers) as ws:
                tokens = (await rpc(ws, "tokens/list"))["result"]["tokens"]
                kinds = sorted(kind for t in tokens for kind in t["routes"])
                assert kinds == ["piv-pcsc", "pkcs11"], tokens  # the card, SoftHSM2
                card = next(t for t in tokens if "piv-pcsc" in t["routes"])
                credential = f"{card['id']}/9C"
                totp = await _enrol_totp(ws, credential, tmp_path / "state")
                digest = base64.b64encode(hashlib.sha256(b"w^x").digest()).decode()
                reply = await rpc(ws, "credentials/authorize", {
                    "credentialID": credential, "hashes": [digest], "PIN": PIN,
                    "OTP": totp.now()}, 7)
                sad = reply["result"]["SAD"]
                signed = await rpc(ws, "signatures/signHash", {
                    "credentialID": credential, "SAD": sad, "hashes": [digest]}, 8)
                assert len(signed["result"]["signatures"]) == 1

        asyncio.run(scenario())
    finally:
        output = stop(process)
    assert "Traceback" not in output, output


def test_sd_listen_fds_takes_only_sockets_meant_for_this_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import systemd

    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "2")
    assert systemd.listen_sockets() == []
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ  # unset
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "two")
    with pytest.raises(systemd.ActivationError, match="LISTEN_FDS='two'"):
        systemd.listen_sockets()
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_sd_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import systemd

    name = f"qsign-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("STATUS=testing") is True
        assert receiver.recv(64) == b"STATUS=testing"
