"""Webhooks (portal/API.md "Webhooks"): a workspace's events go into a durable queue in
the store (portal/store/webhooks.py) in the request that causes them; a delivery task
POSTs each to its URL, signed, and retries with exponential back-off.

The signature follows Stripe's scheme (docs.stripe.com/webhooks, "Verify signatures
manually"): the header `Qsign-Signature: t=<unix time>,v1=<hex>` where the hex is
HMAC-SHA256 (RFC 2104) keyed with the webhook's secret over `<t>.<the raw body>`; the
receiver recomputes it and refuses a timestamp too far from its clock (replays).

A webhook URL is a request the portal makes on a requester's behalf (SSRF): it must be
http(s) to a host whose every address is public, unless it starts with one of the
configured `webhook_url_prefixes` (for a receiver on a private network, or loopback in
tests). The check runs at registration, and at each attempt on the very addresses the
connection uses (the client's resolver refuses a private one: no DNS rebinding between
check and connect); redirects are never followed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from portal.accounts import Accounts
from portal.errors import Code, PortalError
from portal.store import Store, Transaction
from portal.store.records import Signer
from portal.store.webhooks import Delivery

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Qsign-Signature"
ATTEMPT_TIMEOUT = 10.0  # seconds per POST
BODY_EXCERPT = 500  # characters of the receiver's answer kept in the log
POLL = 5.0  # seconds between looks at the queue when nothing wakes the task


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Qsign-Signature` header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300
           ) -> bool:
    """What a receiver does: the HMAC matches and the timestamp is within `tolerance`."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected_mac = signature(secret, timestamp, body).split("v1=", 1)[1]
    return (abs(now - timestamp) <= tolerance
            and hmac.compare_digest(expected_mac, parts.get("v1", "")))


def _refuse(why: str) -> PortalError:
    return PortalError(Code.BAD_REQUEST, f"url: {why}", field="url")


def _checked_parts(url: str) -> SplitResult:
    """The URL's parts, if it is http(s) with a host and no user name or password."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise _refuse("no user name or password in the URL")
    return parts


def _private(address: str) -> bool:
    return not ipaddress.ip_address(address.split("%", 1)[0]).is_global


def check_url(url: str, allowed_prefixes: tuple[str, ...]) -> None:
    """BAD_REQUEST naming `url` unless the portal may POST there (module docstring);
    blocking (resolves the host)."""
    parts = _checked_parts(url)
    if any(url.startswith(prefix) for prefix in allowed_prefixes):
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        raise _refuse("its host does not resolve") from None
    for info in infos:
        address = str(info[4][0])
        if _private(address):
            loopback = ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
            raise _refuse(f"its host is a {'loopback' if loopback else 'private'} address "
                          "(allowed only by the portal's webhook_url_prefixes)")


class PublicOnlyResolver(AbstractResolver):
    """The default resolver, refusing a host with any private or loopback address: the
    addresses checked are the ones the connection then uses."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if any(_private(r["host"]) for r in found):
            raise OSError(f"{host} resolves to a private or loopback address")
        return found

    async def close(self) -> None:
        await self._resolver.close()


def transaction_data(tx: Transaction, signer: Signer | None = None) -> dict[str, Any]:
    """An event's `data`: the transaction, and the signer it is about."""
    data: dict[str, Any] = {"transaction": {"id": tx.id, "title": tx.title,
                                            "status": tx.status.value}}
    if signer is not None:
        data["signer"] = {"id": signer.id, "name": signer.name, "email": signer.email,
                          "order": signer.position + 1, "status": signer.status.value}
    return data


class WebhookDesk:
    """Queues a workspace's events and delivers them (`run`, one task per process)."""

    def __init__(self, store: Store, allowed_prefixes: tuple[str, ...],
                 retry_base: dt.timedelta) -> None:
        self.store = store
        self.allowed_prefixes = allowed_prefixes
        self.retry_base = retry_base
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def emit(self, tx: Transaction, event: str, signer: Signer | None = None) -> None:
        """Queue `event` about `tx` for its workspace's webhooks (durable before it
        returns), then wake the delivery task."""
        workspace = await asyncio.to_thread(
            Accounts(self.store.db, self.store.clock).workspace_of_transaction, tx.id)
        if workspace is None:
            return
        queued = await asyncio.to_thread(self.store.queue_event, workspace, event, tx.id,
                                         transaction_data(tx, signer))
        if queued:
            self.wake()

    async def viewed(self, signer_id: str) -> None:
        """`viewed`, the first time the signer opens their invitation."""
        tx = await asyncio.to_thread(self.store.transaction_of_signer, signer_id)
        workspace = await asyncio.to_thread(
            Accounts(self.store.db, self.store.clock).workspace_of_transaction, tx.id)
        if workspace is None:
            return
        signer = tx.signer(signer_id)
        queued = await asyncio.to_thread(self.store.queue_event, workspace, "viewed", tx.id,
                                         transaction_data(tx, signer), once=signer_id)
        if queued:
            self.wake()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as allowed, aiohttp.ClientSession(
                timeout=timeout,
                connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver())) as public:
            while True:
                self._wake.clear()
                try:
                    await self.deliver_due(allowed, public)
                except Exception:
                    log.exception("webhook deliveries failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=POLL)

    async def deliver_due(self, allowed: aiohttp.ClientSession,
                          public: aiohttp.ClientSession) -> int:
        """Lease and attempt every due delivery, a URL under `webhook_url_prefixes`
        through `allowed`, any other through `public` (PublicOnlyResolver); how many
        were attempted."""
        count = 0
        while batch := await asyncio.to_thread(self.store.lease_deliveries):
            for delivery in batch:
                under = any(delivery.url.startswith(p) for p in self.allowed_prefixes)
                await self._attempt(allowed if under else public, delivery, public=not under)
                count += 1
        return count

    async def _attempt(self, session: aiohttp.ClientSession, delivery: Delivery, *,
                       public: bool) -> None:
        status: int | None = None
        body: str | None = None
        error: str | None = None
        try:
            _checked_parts(delivery.url)
            if public:  # an IP address in the URL meets no resolver: checked here
                await asyncio.to_thread(check_url, delivery.url, ())
            payload = delivery.payload.encode()
            headers = {"Content-Type": "application/json", "User-Agent": "qsign-webhooks/1",
                       "Qsign-Event": delivery.event, "Qsign-Delivery": delivery.id,
                       SIGNATURE_HEADER: signature(delivery.secret, int(time.time()), payload)}
            async with session.post(delivery.url, data=payload, headers=headers,
                                    allow_redirects=False) as response:
                status = response.status
                body = (await response.content.read(BODY_EXCERPT * 4)).decode(
                    "utf-8", "replace")[:BODY_EXCERPT]
        except PortalError as exc:
            error = str(exc)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error or (status is not None and not 200 <= status < 300):
            log.info("webhook delivery %s (%s) attempt %d: %s", delivery.id, delivery.event,
                     delivery.attempts, error or status)
        await asyncio.to_thread(self.store.delivery_attempted, delivery, status=status,
                                body=body, error=error, retry_base=self.retry_base)
