"""Free loopback ports for the servers tests and benches start."""

from __future__ import annotations

import socket


def free_port(*, ipv6: bool = False) -> int:
    """A port free on 127.0.0.1 and, with `ipv6`, on ::1 too (the agent listens on both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not ipv6:
            return port
        try:
            with socket.socket(socket.AF_INET6) as s6:
                s6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port")
