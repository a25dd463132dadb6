"""A control socket for a running card: testers and tests pull, push and slow it.

Line protocol on a Unix socket (0600): one command per line, one reply line.
  remove | insert | latency MS | status
Replies are JSON objects; errors have {"error": "..."}.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from firmware_sim.vpcd import VpcdLink

log = logging.getLogger(__name__)
_MAX_LINE = 256


class ControlServer:
    def __init__(self, link: VpcdLink, path: Path) -> None:
        self.link = link
        self.path = path
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if path.exists() or path.is_symlink():
            path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server.bind(str(path))
        finally:
            os.umask(old_umask)
        self._server.listen(4)
        self._thread = threading.Thread(target=self._accept, name="card-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            log.debug("control socket already gone")

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                for line in stream:
                    reply = self.handle(line[:_MAX_LINE].decode(errors="replace").strip())
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()

    def handle(self, line: str) -> dict[str, Any]:
        command, _, argument = line.partition(" ")
        link = self.link
        if command == "remove":
            link.remove()
        elif command == "insert":
            link.insert()
        elif command == "latency":
            try:
                ms = float(argument)
            except ValueError:
                return {"error": "latency needs milliseconds"}
            if not 0 <= ms <= 60_000:
                return {"error": "latency must be between 0 and 60000 ms"}
            link.latency = ms / 1000
        elif command != "status":
            return {"error": f"unknown command {command!r}"}
        return {
            "serial": link.card.serial,
            "inserted": link.inserted,
            "connected": link.connected.is_set(),
            "latency_ms": link.latency * 1000,
            "apdus": link.apdu_count,
        }


def send_command(path: Path, line: str, timeout: float = 5.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(line.encode() + b"\n")
        with sock.makefile("rb") as stream:
            reply = json.loads(stream.readline())
    if not isinstance(reply, dict):
        raise ValueError("malformed reply from the card's control socket")
    return reply
