"""HttpSmsOtpProvider against loopback servers: the portal's contract (tests/support/
sms_portal.py) mapped to the agent's OTP errors, and every way the service can fail
mapped to OtpServiceUnavailable (nothing verified)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.identity import otp
from agent.identity.sms import HttpSmsOtpProvider
from tests.support.ports import free_port
from tests.support.sms_portal import MAX_ATTEMPTS, SENDS_PER_SESSION, FakePortal

HASHES = [hashlib.sha256(f"doc {i}".encode()).digest() for i in range(2)]


def run(scenario: Callable[[FakePortal, HttpSmsOtpProvider], Awaitable[None]]) -> None:
    async def main() -> None:
        portal = FakePortal()
        await portal.start()
        provider = HttpSmsOtpProvider(portal.url + "/",  # a trailing slash is fine
                                      token_file=portal.token_file)
        try:
            await scenario(portal, provider)
        finally:
            await provider.close()
            await portal.stop()

    asyncio.run(main())


def test_right_code_once_for_the_same_hashes() -> None:
    async def scenario(portal: FakePortal, sms: HttpSmsOtpProvider) -> None:
        session = portal.open_session(HASHES)
        challenge = await sms.send(session, HASHES)
        assert challenge.expires_in == 300 and challenge.phone_masked.endswith("78")
        code = portal.last_code()
        with pytest.raises(otp.OtpHashesMismatch):  # a code for A is refused for B
            await sms.verify(session, code, HASHES[:1])
        await sms.verify(session, code, HASHES)
        with pytest.raises(otp.OtpReplayed):
            await sms.verify(session, code, HASHES)

    run(scenario)


def test_wrong_expired_unknown_locked_throttled() -> None:
    async def scenario(portal: FakePortal, sms: HttpSmsOtpProvider) -> None:
        session = portal.open_session(HASHES)
        await sms.send(session, HASHES)
        code = portal.last_code()
        wrong = "000000" if code != "000000" else "111111"
        with pytest.raises(otp.OtpInvalid) as invalid:
            await sms.verify(session, wrong, HASHES)
        assert invalid.value.attempts_left == MAX_ATTEMPTS - 1
        portal.offset = 301
        with pytest.raises(otp.OtpExpired):
            await sms.verify(session, code, HASHES)
        with pytest.raises(otp.OtpSessionUnknown):
            await sms.verify("no-such-session", code, HASHES)
        with pytest.raises(otp.OtpSessionUnknown):  # not even sent: not a printable session
            await sms.verify("bad session\n", code, HASHES)
        for _ in range(MAX_ATTEMPTS - 2):
            with pytest.raises(otp.OtpInvalid):
                await sms.verify(session, wrong, HASHES)
        with pytest.raises(otp.OtpLocked):
            await sms.verify(session, wrong, HASHES)
        for _ in range(SENDS_PER_SESSION - 1):
            await sms.send(session, HASHES)
        with pytest.raises(otp.OtpThrottled) as throttled:
            await sms.send(session, HASHES)
        assert throttled.value.retry_after_seconds == 60

    run(scenario)


def test_a_code_that_cannot_be_one_is_not_sent() -> None:
    async def scenario(portal: FakePortal, sms: HttpSmsOtpProvider) -> None:
        session = portal.open_session(HASHES)
        with pytest.raises(otp.OtpInvalid) as invalid:
            await sms.verify(session, "12ab56", HASHES)
        assert invalid.value.attempts_left is None
        assert portal.calls == []

    run(scenario)


def test_service_down_is_unavailable() -> None:
    async def main() -> None:
        sms = HttpSmsOtpProvider(f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
        try:
            with pytest.raises(otp.OtpServiceUnavailable):
                await sms.verify("session", "123456", HASHES)
            with pytest.raises(otp.OtpServiceUnavailable):
                await sms.send("session", HASHES)
        finally:
            await sms.close()

    asyncio.run(main())


async def _answer_with(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> TestServer:
    app = web.Application()
    app.router.add_post("/api/v1/sms-otp/verify", handler)
    app.router.add_post("/api/v1/sms-otp/send", handler)
    app.router.add_post("/elsewhere", _verified)  # followed, a redirect would verify
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def _verified(request: web.Request) -> web.StreamResponse:
    return web.json_response({"verified": True})


async def _redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPTemporaryRedirect("/elsewhere")  # 307 keeps the POST


async def _server_error(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": "INTERNAL", "message": "boom"}, status=500)


async def _html(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html>proxy error</html>", content_type="text/html")


async def _verified_false(request: web.Request) -> web.StreamResponse:
    return web.json_response({"verified": "yes"})


async def _unknown_code(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": "SOMETHING_NEW", "message": "?"}, status=400)


async def _huge(request: web.Request) -> web.StreamResponse:
    return web.json_response({"verified": True, "pad": "x" * 100_000})


async def _slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)  # a server slower than the client's 1 s timeout, not a wait on it
    return web.json_response({"verified": True})


@pytest.mark.parametrize("handler", [_redirect, _server_error, _html, _verified_false,
                                     _unknown_code, _huge, _slow])
def test_answers_outside_the_contract_are_unavailable(
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
    async def main() -> None:
        server = await _answer_with(handler)
        sms = HttpSmsOtpProvider(f"http://127.0.0.1:{server.port}", timeout_seconds=1)
        try:
            with pytest.raises(otp.OtpServiceUnavailable):
                await sms.verify("session", "123456", HASHES)
        finally:
            await sms.close()
            await server.close()

    asyncio.run(main())


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpSmsOtpProvider("file:///etc/passwd")
