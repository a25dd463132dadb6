"""Fleet discovery over mDNS / DNS-SD (RFC 6762, RFC 6763): service type `_qsign._tcp`.

Only when the enterprise policy sets `agent.discovery = true`. The agent advertises
its port and TXT records (RFC 6763 §6) with nothing personal in them: the TXT format
version, the qsign version, a random agent id (kept in the state directory), the
number of tokens present and the agent's health. The instance and host names derive
from the agent id, never from the machine's or the user's name.

IPv4 multicast only, on the configured interfaces (addresses or names; names are
resolved with SIOCGIFADDR, so the hardened unit needs no AF_NETLINK).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import secrets
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ground.files import write_atomically

log = logging.getLogger(__name__)

SERVICE_TYPE = "_qsign._tcp.local."
TXT_VERSION = "1"
AGENT_ID_FILE = "agent-id"
_SIOCGIFADDR = 0x8915  # linux/sockios.h


class DiscoveryError(OSError):
    """An interface has no IPv4 address, or mDNS cannot start on it."""


def agent_id(state_dir: Path) -> str:
    """This agent's random id (128 bits, hex): made once, then read from the state dir."""
    path = state_dir / AGENT_ID_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
        return text
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = secrets.token_hex(16)
    write_atomically(path, text.encode() + b"\n", 0o644)
    return text


def interface_address(name: str) -> str:
    """The IPv4 address of interface `name` (SIOCGIFADDR on an AF_INET socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR,
                                 struct.pack("256s", name.encode()[:15]))
        except OSError as exc:
            raise DiscoveryError(f"interface {name!r} has no IPv4 address: {exc}") from exc
    return socket.inet_ntoa(answer[20:24])  # struct ifreq: name[16], sockaddr_in


def advertised_addresses(interfaces: Sequence[str]) -> list[str]:
    """IPv4 addresses for the configured interfaces; none configured: every interface
    with an IPv4 address except loopback ones (listed from /sys/class/net)."""
    if interfaces:
        addresses = []
        for entry in interfaces:
            try:
                addresses.append(str(ipaddress.IPv4Address(entry)))
            except ValueError:
                addresses.append(interface_address(entry))
        return list(dict.fromkeys(addresses))
    found = []
    for path in sorted(Path("/sys/class/net").iterdir()):
        with contextlib.suppress(DiscoveryError):
            address = interface_address(path.name)
            if not ipaddress.IPv4Address(address).is_loopback:
                found.append(address)
    if not found:
        raise DiscoveryError("no interface with a non-loopback IPv4 address")
    return found


def _instance(agent: str) -> tuple[str, str]:
    label = f"qsign-{agent[:16]}"
    return f"{label}.{SERVICE_TYPE}", f"{label}.local."


def txt_records(*, agent: str, version: str, tokens: int, health: str) -> dict[str, str]:
    return {"txtvers": TXT_VERSION, "version": version, "id": agent,
            "tokens": str(tokens), "health": health}


class Advertiser:
    """Registers this agent's `_qsign._tcp` service and keeps its TXT records current."""

    def __init__(self, *, agent: str, version: str, port: int,
                 interfaces: Sequence[str]) -> None:
        self.agent = agent
        self.version = version
        self.port = port
        self.addresses = advertised_addresses(interfaces)
        self._zeroconf: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    def _service(self, tokens: int, health: str) -> AsyncServiceInfo:
        name, server = _instance(self.agent)
        return AsyncServiceInfo(
            SERVICE_TYPE, name, port=self.port, server=server,
            addresses=[socket.inet_aton(a) for a in self.addresses],
            properties=txt_records(agent=self.agent, version=self.version, tokens=tokens,
                                   health=health))

    async def start(self, tokens: int, health: str = "ok") -> None:
        try:
            self._zeroconf = AsyncZeroconf(interfaces=list(self.addresses),
                                           ip_version=IPVersion.V4Only)
        except OSError as exc:
            raise DiscoveryError(f"mDNS cannot start on {self.addresses}: {exc}") from exc
        self._info = self._service(tokens, health)
        await self._zeroconf.async_register_service(self._info)
        log.info("advertising %s on %s", self._info.name, ", ".join(self.addresses))

    async def update(self, tokens: int, health: str = "ok") -> None:
        if self._zeroconf is None:
            return
        self._info = self._service(tokens, health)
        await self._zeroconf.async_update_service(self._info)

    async def stop(self) -> None:
        """Goodbye packets (TTL 0, RFC 6762 §10.1), then close the sockets."""
        if self._zeroconf is None:
            return
        zeroconf, self._zeroconf = self._zeroconf, None
        try:
            if self._info is not None:
                await zeroconf.async_unregister_service(self._info)
        finally:
            await zeroconf.async_close()


@dataclass(frozen=True)
class DiscoveredAgent:
    id: str
    version: str
    tokens: int | None
    health: str
    addresses: tuple[str, ...]
    port: int
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "tokens": self.tokens,
                "health": self.health, "addresses": list(self.addresses),
                "port": self.port, "name": self.name}


def _parse(info: AsyncServiceInfo) -> DiscoveredAgent | None:
    txt = {k: v or "" for k, v in info.decoded_properties.items()}
    if txt.get("txtvers") != TXT_VERSION or info.port is None:
        return None
    tokens = txt.get("tokens", "")
    return DiscoveredAgent(
        id=txt.get("id", "")[:64], version=txt.get("version", "")[:32],
        tokens=int(tokens) if tokens.isdigit() else None,
        health=txt.get("health", "unknown")[:32],
        addresses=tuple(info.parsed_addresses(IPVersion.V4Only)),
        port=info.port, name=info.name)


async def browse(interfaces: Sequence[str], seconds: float) -> list[DiscoveredAgent]:
    """The agents answering on these interfaces within `seconds` (one per id)."""
    if seconds <= 0:
        raise ValueError("the browse time must be positive")
    addresses = advertised_addresses(interfaces)
    try:
        zeroconf = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
    except OSError as exc:
        raise DiscoveryError(f"mDNS cannot start on {addresses}: {exc}") from exc
    names: set[str] = set()

    def changed(zeroconf: Zeroconf, service_type: str, name: str,
                state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            names.discard(name)
        else:
            names.add(name)

    browser = AsyncServiceBrowser(zeroconf.zeroconf, SERVICE_TYPE, handlers=[changed])
    try:
        await asyncio.sleep(seconds)
        found: dict[str, DiscoveredAgent] = {}
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(zeroconf.zeroconf, 3000):
                log.info("%s did not answer the resolution", name)
                continue
            agent = _parse(info)
            if agent is not None:
                found[agent.id] = agent
        return sorted(found.values(), key=lambda a: a.id)
    finally:
        await browser.async_cancel()
        await zeroconf.async_close()
