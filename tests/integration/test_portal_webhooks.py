"""Webhooks over real sockets: a receiver (aiohttp) on loopback gets a workspace's events
from the portal, each signed with HMAC-SHA256 over `timestamp.body` (checked here for
every event); a 500 is retried after the back-off from the store's queue and the
delivery log shows both answers; a URL to the portal's own loopback address, or any
address outside the configured prefixes, is refused (SSRF)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from portal.service import sweep_expired
from portal.webhooks import PublicOnlyResolver
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.ports import free_port
from tests.support.waiting import wait_until_async
from tests.support.webhook_receiver import EVENTS, Receiver, receiving

WS = "/api/v1/workspaces/default"  # the transactions of the bootstrap token go here


async def _hook(portal: RunningPortal, url: str) -> dict[str, Any]:
    hook: dict[str, Any] = await portal.call("POST", WS + "/webhooks",
                                             {"url": url, "events": EVENTS}, auth=True,
                                             expect=201)
    assert hook["secret"].startswith("whsec_")
    return hook


def test_events_are_signed_and_a_500_is_retried(tmp_path: Path) -> None:
    receiver = Receiver(failures=1)

    async def main() -> None:
        async with receiving(receiver) as url, running_portal(
                tmp_path, webhook_url_prefixes=[url], webhook_retry_seconds=30) as portal:
            hook = await _hook(portal, url)
            tx = await portal.create(signers=2, documents=1, sequential=False)
            first = portal.invite_path(tx, 0)
            await portal.call("GET", f"/api/s/{first}")
            await portal.call("GET", f"/api/s/{first}")  # viewed once, not twice
            # The first delivery met the 500: it waits for its back-off in the store.
            await wait_until_async(lambda: len(receiver.received) == 1, "the first attempt")
            [log] = (await portal.call("GET", f"{WS}/webhooks/{hook['id']}/deliveries",
                                       auth=True))["deliveries"]
            assert log["state"] == "pending" and log["attempts"][0]["status"] == 500
            assert log["attempts"][0]["body"] == "receiver down for maintenance"
            portal.clock.advance(seconds=31)
            portal.state.webhooks.wake()
            await wait_until_async(lambda: len(receiver.received) == 2, "the retry")
            await portal.consent(first)
            await portal.call("POST", f"/api/s/{first}/accept", {})
            await portal.call("POST", f"/api/s/{portal.invite_path(tx, 1)}/refuse",
                              {"reason": "wrong rent"})
            cancelled = await portal.create(signers=1, documents=1)
            await portal.call("POST", f"/api/v1/transactions/{cancelled['id']}/cancel",
                              {"reason": "sent by mistake"}, auth=True)
            expiring = await portal.create(signers=1, documents=1, expiresInDays=1)
            portal.clock.advance(days=2)
            await sweep_expired(portal.state)
            await wait_until_async(lambda: len(receiver.received) == 6, "every event")
            events = receiver.events(hook["secret"])
            assert events[0] == events[1]  # the retry sent the same signed body
            assert [(e["event"], e["data"]["transaction"]["id"]) for e in events[1:]] == [
                ("viewed", tx["id"]), ("accepted", tx["id"]), ("refused", tx["id"]),
                ("cancelled", cancelled["id"]), ("expired", expiring["id"])]
            assert events[2]["data"]["signer"]["email"] == "s1@example.test"
            log = (await portal.call("GET", f"{WS}/webhooks/{hook['id']}/deliveries",
                                     auth=True))["deliveries"][-1]
            assert log["state"] == "delivered"
            assert [a["status"] for a in log["attempts"]] == [500, 200]

    asyncio.run(main())


def test_a_webhook_url_outside_the_allowed_prefixes_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        allowed = f"http://127.0.0.1:{free_port()}/hook"
        async with running_portal(tmp_path, webhook_url_prefixes=[allowed]) as portal:
            for url in (f"{portal.url}/api/v1/console/workspaces",  # the portal's own admin
                        "http://localhost:9/hook", "http://[::1]:9/", "http://10.0.0.8/",
                        "ftp://example.test/", "http://user:pw@example.test/"):
                refused = await portal.call("POST", WS + "/webhooks",
                                            {"url": url, "events": ["signed"]}, auth=True,
                                            expect=400)
                assert refused["error"] == "BAD_REQUEST" and refused["field"] == "url", url
            bad = await portal.call("POST", WS + "/webhooks",
                                    {"url": allowed, "events": ["opened"]}, auth=True,
                                    expect=400)
            assert bad["field"] == "events[0]"
            await _hook(portal, allowed)  # the configured prefix is allowed

    asyncio.run(main())


def test_a_delivery_never_reaches_a_private_address_outside_the_prefixes(
        tmp_path: Path) -> None:
    """A webhook saved while its loopback URL was allowed, then the portal restarted
    without that prefix: each attempt's connection is refused on the address it would
    use, and the receiver gets nothing."""
    receiver = Receiver(failures=0)

    async def main() -> None:
        async with receiving(receiver) as url:
            async with running_portal(tmp_path, webhook_url_prefixes=[url]) as portal:
                hook = await _hook(portal, url)
            async with running_portal(tmp_path) as portal:
                tx = await portal.create(signers=1, documents=1)
                await portal.call("GET", f"/api/s/{portal.invite_path(tx, 0)}")

                async def refused() -> Any:
                    log = (await portal.call("GET", f"{WS}/webhooks/{hook['id']}/deliveries",
                                             auth=True))["deliveries"]
                    return log and log[0]["attempts"] and log[0]["attempts"][0]["error"]

                error = await wait_until_async(refused, "an attempt refused")
                assert "loopback address" in error
                assert receiver.received == []

    asyncio.run(main())


def test_the_delivery_resolver_refuses_a_name_for_a_loopback_address() -> None:
    """Names are checked on the addresses the connection would use (DNS rebinding)."""
    async def main() -> None:
        resolver = PublicOnlyResolver()
        try:
            with pytest.raises(OSError, match="private or loopback"):
                await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    asyncio.run(main())
