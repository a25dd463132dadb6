"""The SMS OTP routes the signers' agents call (portal/API.md "SMS OTP",
`/api/v1/sms-otp/...`): text a code bound to the hashes to sign, and spend it. Only an
agent with an accepted credential may call them (portal/agent_auth.py)."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from portal.agent_auth import require_agent
from portal.errors import Code, PortalError
from portal.routes.parse import b64_list, read_body, string
from portal.routes.state import PORTAL


def _hash_strings(body: dict[str, Any]) -> list[str]:
    hashes = b64_list(body, "hashes", max_items=100, max_bytes=64)
    if not hashes or any(len(h) not in (32, 48, 64) for h in hashes):
        raise PortalError(Code.BAD_REQUEST, "hashes: SHA-256/384/512 digests")
    return [base64.b64encode(h).decode() for h in hashes]


async def sms_otp_send(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    require_agent(request.headers, portal.config.agent_token_sha256)
    body = await read_body(request)
    otp_id = string(body, "session", max_len=64)
    hashes = _hash_strings(body)
    sent = await portal.desk.send_code(otp_id, hashes)
    return web.json_response({"phoneMasked": sent.phone_masked, "expiresIn": sent.expires_in})


async def sms_otp_verify(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    require_agent(request.headers, portal.config.agent_token_sha256)
    body = await read_body(request)
    otp_id = string(body, "session", max_len=64)
    code = string(body, "code", max_len=12)
    hashes = _hash_strings(body)
    # A token-management code of an enrolment, or a signing session's code.
    desk = portal.enrolment if await portal.enrolment.owns_code(otp_id) else portal.desk
    await desk.verify_code(otp_id, code, hashes)
    return web.json_response({"verified": True})
