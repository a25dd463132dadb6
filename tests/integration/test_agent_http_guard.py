"""SECURITY.md #40: the agent's own connection keys on the shared HTTP guard
(qsign/http_guard.py), against a real `qsign agent run`. Its connection cap is lowered
under RLIMIT_NOFILE, so silent connections make way for a monitor's request instead of
exhausting the descriptors (accept failing with EMFILE, the request never accepted);
`body_timeout_seconds` bounds a whole body, however fast the bytes trickle in."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.support.agent_daemon import AgentProcess, http_get, running, wait_health
from tests.support.waiting import DEADLINE

NOFILE = 200  # below the default max_tcp_connections (256)


def test_the_connection_cap_fits_under_the_descriptor_limit(tmp_path: Path) -> None:
    # Deadlines far beyond the test: only the cap can close these connections.
    agent = AgentProcess(tmp_path, nofile=NOFILE, pcsc=False, header_timeout_seconds=3600,
                     body_timeout_seconds=3600, idle_timeout_seconds=3600)
    sockets: list[socket.socket] = []
    with running(agent):
        try:
            for _ in range(NOFILE + 20):  # more than the agent has descriptors
                sockets.append(socket.create_connection(("127.0.0.1", agent.port),
                                                        timeout=DEADLINE))
            status, _, answer = http_get(agent.port, "/v1/health", timeout=DEADLINE)
            assert status == 200 and json.loads(answer)["status"] == "ok"
            assert wait_health(agent.port, agent.process)["status"] == "ok"
        finally:
            for sock in sockets:
                sock.close()
        log = agent.stop()
    assert f"the descriptor limit is {NOFILE}" in log, log[-2000:]


def test_a_body_trickled_faster_than_the_minimum_rate_still_has_its_deadline(
        tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, pcsc=False, body_timeout_seconds=2)
    chunk, chunks = 1000, 200  # 4,000 bytes a second: each second buys 8 more
    head = (f"POST /v1/pair HTTP/1.1\r\nHost: {agent.host}\r\nOrigin: https://x.test\r\n"
            f"Content-Type: application/json\r\nContent-Length: {chunk * chunks + 2}\r\n"
            '\r\n{"'.encode())
    with running(agent), socket.create_connection(("127.0.0.1", agent.port),
                                                  timeout=DEADLINE) as sock:
        sock.sendall(head)
        sent = 0
        try:
            for sent in range(chunks):  # noqa: B007 (how far it got is the point)
                sock.sendall(b"a" * chunk)
                time.sleep(0.25)  # the client's own pace, not a wait for the server
            answer = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert sent < chunks - 1 and answer == b"", \
            f"the whole trickled body was read ({answer[:60]!r})"
        assert wait_health(agent.port, agent.process)["status"] == "ok"
