"""Real PC/SC parts for tests: a private pcscd with vpcd readers, cards plugged into it.

The pcscd runs in its own mount namespace with /run/pcscd bound to a temp
directory, so tests never touch (or depend on) a system pcscd, and can restart
theirs. Clients find it through PCSCLITE_CSOCK_NAME.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import DEADLINE

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
READER_NAMES = ("Virtual PCD 00 00", "Virtual PCD 00 01")


class PcscUnavailable(RuntimeError):
    pass


def free_port_pair() -> int:
    """A port p with p and p+1 free on loopback (vpcd opens one per reader)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("0.0.0.0", port + 1))  # noqa: S104 - vpcd binds all interfaces
            with socket.socket() as s1:
                s1.bind(("0.0.0.0", port))  # noqa: S104 - as vpcd will
        except OSError:
            continue
        return port
    raise PcscUnavailable("no free port pair for vpcd")


@dataclass
class PrivatePcscd:
    base: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.run_dir = self.base / "run"
        self.conf_dir = self.base / "reader.conf.d"
        self.log_path = self.base / "pcscd.log"
        self.socket_path = self.run_dir / "pcscd.comm"

    def start(self) -> None:
        for tool in ("pcscd", "unshare", "mount"):
            if shutil.which(tool) is None:
                raise PcscUnavailable(f"{tool} not installed (run 'make setup')")
        if not VPCD_DRIVER.exists():
            raise PcscUnavailable(f"{VPCD_DRIVER} missing (install vsmartcard-vpcd)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "vpcd").write_text(
            'FRIENDLYNAME "Virtual PCD"\n'
            f"DEVICENAME   /dev/null:0x{self.port:04X}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    0x{self.port:04X}\n"
        )
        Path("/run/pcscd").mkdir(parents=True, exist_ok=True)
        script = (
            f"mount --bind {self.run_dir} /run/pcscd && "
            f"exec pcscd --foreground --config {self.conf_dir}"
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PcscUnavailable(
                    f"pcscd exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.socket_path.exists() and self._listening():
                return
            time.sleep(0.05)
        self.stop()
        raise PcscUnavailable(f"pcscd did not start within {DEADLINE:g} s:\n{self.log_tail()}")

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None
        for leftover in ("pcscd.comm", "pcscd.pid"):
            (self.run_dir / leftover).unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no pcscd log)"


def reader_state(reader: str) -> str:
    """'present', 'empty' or 'absent' for `reader`, via a fresh PC/SC context."""
    from smartcard.scard import (
        SCARD_S_SUCCESS,
        SCARD_SCOPE_USER,
        SCARD_STATE_PRESENT,
        SCARD_STATE_UNAWARE,
        SCardEstablishContext,
        SCardGetStatusChange,
        SCardListReaders,
        SCardReleaseContext,
    )

    rv, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
    if rv != SCARD_S_SUCCESS:
        return "absent"
    try:
        rv, readers = SCardListReaders(ctx, [])
        if rv != SCARD_S_SUCCESS or reader not in readers:
            return "absent"
        rv, states = SCardGetStatusChange(ctx, 0, [(reader, SCARD_STATE_UNAWARE)])
        if rv != SCARD_S_SUCCESS:
            return "absent"
        return "present" if states[0][1] & SCARD_STATE_PRESENT else "empty"
    finally:
        SCardReleaseContext(ctx)


def wait_reader(reader: str, want: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    state = reader_state(reader)
    while state != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{reader}: still {state}, wanted {want}")
        time.sleep(0.05)
        state = reader_state(reader)


@dataclass
class RunningCard:
    """A `qsign card run` process plugged into a vpcd reader."""

    state_path: Path
    port: int
    reader: str
    control_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qsign", "-v", "card", "run", "--state", str(self.state_path),
             "--port", str(self.port), "--control", str(self.control_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        try:
            wait_reader(self.reader, "present")
        except TimeoutError as exc:
            self.stop()
            raise PcscUnavailable(f"card did not appear in {self.reader}: {exc}") from exc

    def control(self, command: str) -> dict[str, object]:
        from firmware_sim.control import send_command

        return send_command(self.control_path, command)

    @property
    def log_path(self) -> Path:
        return self.state_path.parent / "card-run.log"

    def restart_traced(self) -> None:
        """Restart the card with APDU traces (PIN bytes masked) in its log."""
        self.stop()
        wait_reader(self.reader, "empty")
        self.start(env={**os.environ, "QSIGN_LOG_LEVEL": "5"})

    def commands(self) -> list[str]:
        """INS P1 P2 (hex) of each command APDU a traced card logged, in order. The card
        logs a command before it answers it, so an answered command is always there."""
        return [apdu[2:8] for apdu in self.command_apdus()]

    def command_apdus(self) -> list[str]:
        """Each whole command APDU (hex, PIN bytes masked) a traced card logged, in order."""
        text = self.log_path.read_text(errors="replace")
        return [m.group(1) for m in re.finditer(r"C-APDU ([0-9a-f]+)", text)]

    def remove(self) -> None:
        self.control("remove")
        wait_reader(self.reader, "empty")

    def insert(self) -> None:
        self.control("insert")
        wait_reader(self.reader, "present")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def connect(reader_name: str):  # type: ignore[no-untyped-def]
    """A pyscard connection that leaves the card powered on disconnect, so middleware
    holding its own handle (OpenSC) is not disturbed."""
    from smartcard.scard import SCARD_LEAVE_CARD
    from smartcard.System import readers

    reader = next(r for r in readers() if str(r) == reader_name)
    connection = reader.createConnection()
    connection.connect(disposition=SCARD_LEAVE_CARD)
    return connection
