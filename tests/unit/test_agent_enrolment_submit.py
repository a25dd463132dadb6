"""The agent's enrolment request to its CA (SECURITY #32): the configured CA only, no
redirect followed, a bounded answer, and a retried request learns its certificate."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.identity.enrolment import Enrolled, EnrolmentFailed, KeyMaterial, submit

MATERIAL = KeyMaterial(spki=b"spki", csr=b"csr", attestation=[b"a", b"b"])


def _run(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
         ) -> Enrolled | EnrolmentFailed:
    async def main() -> Enrolled | EnrolmentFailed:
        app = web.Application()
        app.router.add_post("/v1/enrol", handler)
        app.router.add_post("/elsewhere", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                return await submit(session, str(server.make_url("")), MATERIAL, "e.v.i")
        except EnrolmentFailed as exc:
            return exc
        finally:
            await server.close()
    return asyncio.run(main())


def _issued() -> dict[str, object]:
    return {"serial": "1f", "certificate": base64.b64encode(b"cert").decode(),
            "chain": [base64.b64encode(b"issuing").decode()]}


def test_the_request_carries_the_material_and_the_answer_is_read() -> None:
    seen: dict[str, object] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(await request.json())
        return web.json_response(_issued(), status=201)

    result = _run(handler)
    assert result == Enrolled("1f", b"cert", [b"issuing"])
    assert seen == {"csr": base64.b64encode(b"csr").decode(), "evidence": "e.v.i",
                    "attestation": [base64.b64encode(b"a").decode(),
                                    base64.b64encode(b"b").decode()]}


def test_a_redirect_is_not_followed() -> None:
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        if request.path == "/v1/enrol":
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.json_response(_issued(), status=201)

    result = _run(handler)
    assert isinstance(result, EnrolmentFailed) and result.code == "ca_redirect"
    assert calls == ["/v1/enrol"]


@pytest.mark.parametrize("body", [b"not json", b"[" * 70_000])
def test_garbage_or_oversized_answers_are_typed_failures(body: bytes) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, status=201, content_type="application/json")

    result = _run(handler)
    assert isinstance(result, EnrolmentFailed) and result.code == "ca_unreachable"


def test_a_refusal_names_the_reason_and_a_retry_learns_its_certificate() -> None:
    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": "attestation_untrusted", "message": "no"},
                                 status=422)

    result = _run(refused)
    assert isinstance(result, EnrolmentFailed)
    assert (result.code, result.issued) == ("attestation_untrusted", None)

    async def reused(request: web.Request) -> web.Response:
        return web.json_response({"error": "evidence_reused", "message": "once",
                                  **_issued()}, status=409)

    result = _run(reused)
    assert isinstance(result, EnrolmentFailed) and result.code == "evidence_reused"
    assert result.issued == Enrolled("1f", b"cert", [b"issuing"])
