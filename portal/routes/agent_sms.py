"""The SMS OTP routes the signers' agents call (portal/API.md "SMS OTP",
`/api/v1/sms-otp/...`): text a code bound to the hashes to sign, and spend it. Only an
agent with an accepted credential may call them (portal/agent_auth.py)."""

from __future__ import annotations

import base64

from aiohttp import web

from portal.agent_auth import require_agent
from portal.body_schema import openapi_request
from portal.routes.parse import b64_list, read_body
from portal.routes.state import PORTAL

SEND = openapi_request("/api/v1/sms-otp/send", "post")
VERIFY = openapi_request("/api/v1/sms-otp/verify", "post")


def _hash_strings(hashes: list[str]) -> list[str]:
    """The digests (their length the schema's) in the one base64 spelling the store keeps."""
    return [base64.b64encode(h).decode() for h in b64_list(hashes, "hashes")]


async def sms_otp_send(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    require_agent(request.headers, portal.config.agent_token_sha256)
    body = await read_body(request, SEND)
    sent = await portal.desk.send_code(body["session"].strip(), _hash_strings(body["hashes"]))
    return web.json_response({"phoneMasked": sent.phone_masked, "expiresIn": sent.expires_in})


async def sms_otp_verify(request: web.Request) -> web.Response:
    portal = request.app[PORTAL]
    require_agent(request.headers, portal.config.agent_token_sha256)
    body = await read_body(request, VERIFY)
    otp_id, code = body["session"].strip(), body["code"].strip()
    hashes = _hash_strings(body["hashes"])
    # A token-management code of an enrolment, or a signing session's code.
    desk = portal.enrolment if await portal.enrolment.owns_code(otp_id) else portal.desk
    await desk.verify_code(otp_id, code, hashes)
    return web.json_response({"verified": True})
