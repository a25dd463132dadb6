"""The two systemd protocols the agent speaks, without libsystemd: socket activation
(sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, descriptors from 3) and readiness
notification (sd_notify(3): datagrams to $NOTIFY_SOCKET)."""

from __future__ import annotations

import ipaddress
import os
import socket

SD_LISTEN_FDS_START = 3


class ActivationError(OSError):
    """systemd passed sockets the agent must not serve on."""


def listen_sockets() -> list[socket.socket]:
    """The sockets systemd passed to this process (none if not socket-activated).

    sd_listen_fds(3): only when LISTEN_PID is our pid; the variables are then unset so
    that children do not inherit them, and the descriptors get FD_CLOEXEC.
    """
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    if pid is None or count is None:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not pid.isdigit() or int(pid) != os.getpid():
        return []
    if not count.isdigit():
        raise ActivationError(f"LISTEN_FDS={count!r} is not a number")
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def check_loopback(sock: socket.socket, port: int) -> str:
    """A passed socket must be a TCP listener on a loopback address at the agent's port
    (SECURITY #5: never 0.0.0.0), or the agent refuses to start. Returns its address."""
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET,
                                                              socket.AF_INET6):
        raise ActivationError(f"socket {sock.fileno()}: not a TCP socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ActivationError(f"socket {sock.fileno()}: not listening")
    host, bound_port = sock.getsockname()[:2]
    if not ipaddress.ip_address(host).is_loopback:
        raise ActivationError(f"socket {sock.fileno()}: bound to {host}, not loopback")
    if bound_port != port:
        raise ActivationError(f"socket {sock.fileno()}: port {bound_port}, but agent.port is "
                              f"{port} (the Host check needs the same port)")
    return str(host)


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to the service manager; False if there is none."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
