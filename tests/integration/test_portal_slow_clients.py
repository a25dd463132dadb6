"""SECURITY.md #40 (the portal's half) against a real `qsign portal serve`: connections
that send nothing, a partial header, a trickled header or a partial body are closed
(the test waits on the server's EOF), a normal request answers meanwhile, and a flood
of silent connections from one address makes way for real requests
(qsign/http_guard.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.waiting import wait_until

# Far longer than any deadline below: a connection still open then was never closed.
EOF_WAIT = 30.0


@dataclass
class ServedPortal:
    port: int
    process: subprocess.Popen[bytes]

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=EOF_WAIT)

    def health(self) -> dict[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health",
                                    timeout=EOF_WAIT) as answer:
            body: dict[str, str] = json.loads(answer.read())
            return body


@contextlib.contextmanager
def _serve(tmp_path: Path, **settings: int) -> Iterator[ServedPortal]:
    port = free_port()
    config = tmp_path / "portal.toml"
    lines = ["[portal]", f'state_dir = "{tmp_path / "state"}"', f"port = {port}"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    config.write_text("\n".join(lines) + "\n")
    log = (tmp_path / "portal.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "qsign", "portal", "serve", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    portal = ServedPortal(port, process)

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "portal.log").read_text()
        with contextlib.suppress(OSError):
            return portal.health() == {"status": "ok"}
        return False

    try:
        wait_until(up, timeout=60, what="the portal answers /health")
        yield portal
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sent until it closed the connection (EOF or reset);
    fails if it is still open after EOF_WAIT seconds."""
    sock.settimeout(EOF_WAIT)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the portal kept the connection open (received {received[:80]!r})")
    finally:
        sock.close()
    return received


def test_slow_connections_are_closed_while_others_are_served(tmp_path: Path) -> None:
    with _serve(tmp_path, header_timeout=1, body_timeout=1, idle_timeout=2) as portal:
        silent = portal.connect()
        partial_header = portal.connect()
        partial_header.sendall(b"GET /health HTTP/1.1\r\nHost: portal\r\nX-Slow: ")
        partial_body = portal.connect()
        token = (tmp_path / "state" / "requester.token").read_text().strip()
        # The requester's API reads the body once the token is checked.
        partial_body.sendall(b"POST /api/v1/transactions HTTP/1.1\r\nHost: portal\r\n"
                             b"Authorization: Bearer " + token.encode() + b"\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
                             b"\r\n{\"title\": \"")
        idle = portal.connect()
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: portal\r\n\r\n")
        # Meanwhile a normal request is answered.
        assert portal.health() == {"status": "ok"}

        assert _closed_by_server(silent) == b""
        assert _closed_by_server(partial_header).startswith(b"HTTP/1.1 408 ")
        assert _closed_by_server(partial_body) == b""  # cut off mid-body: nothing to answer
        answered = _closed_by_server(idle)  # answered, then closed once idle
        assert answered.startswith(b"HTTP/1.1 200 ") and answered.count(b"HTTP/1.1") == 1

        # A header trickled a byte at a time buys one second per 500 bytes: not forever.
        trickle = portal.connect()
        trickle.sendall(b"GET /health HTTP/1.1\r\nHost: portal\r\n")
        closed = False
        for _ in range(int(EOF_WAIT / 0.2)):
            try:
                trickle.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)  # the client's own pace, not a wait for the server
        assert closed or _closed_by_server(trickle).startswith(b"HTTP/1.1 408 "), \
            "a trickled header kept the connection open"
        assert portal.health() == {"status": "ok"}
        assert portal.process.poll() is None


def test_a_flood_from_one_address_makes_way_for_real_requests(tmp_path: Path) -> None:
    cap = 8
    # Deadlines far beyond the test: only the cap can close these connections.
    with _serve(tmp_path, header_timeout=300, idle_timeout=300,
                max_connections_per_address=cap) as portal:
        flood = [portal.connect() for _ in range(3 * cap)]
        # The oldest waiting ones were closed to let the newer ones in...
        for sock in flood[:2 * cap]:
            assert _closed_by_server(sock) == b""
        # ... and a real request still gets through, making way in turn.
        assert portal.health() == {"status": "ok"}
        for sock in flood[2 * cap:]:
            sock.close()
        assert portal.process.poll() is None
