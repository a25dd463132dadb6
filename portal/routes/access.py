"""Who may call which route: the requester's bearer token, a signer's invitation link, a
Personal Space link and the session it opens (portal/API.md "Authentication"). The
agents' credential at the SMS OTP routes is portal/agent_auth.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from aiohttp import web

from portal.errors import Code, PortalError
from portal.links import Link, LinkExpired, LinkInvalid, Purpose
from portal.routes.state import PORTAL, Portal


def requester(request: web.Request) -> Portal:
    """The portal, if the request carries the requester's token (RFC 6750 §2.1)."""
    portal = request.app[PORTAL]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), portal.requester_token.encode()):
        raise PortalError(Code.UNAUTHORIZED)
    return portal


def _open(portal: Portal, purpose: Purpose, token: str) -> Link:
    try:
        return portal.links.open(purpose, token, now=portal.store.clock().timestamp())
    except LinkInvalid:
        raise PortalError(Code.LINK_INVALID) from None
    except LinkExpired:
        raise PortalError(Code.LINK_EXPIRED) from None


def invite(request: web.Request) -> tuple[Portal, str, int]:
    """The portal, the signer's id and the link's generation of `{invite}`."""
    portal = request.app[PORTAL]
    link = _open(portal, Purpose.INVITE, request.match_info["invite"])
    return portal, link.subject, link.generation


def space_link(request: web.Request) -> tuple[Portal, str]:
    """The portal and the e-mail address whose Personal Space `{space}` opens."""
    portal = request.app[PORTAL]
    return portal, _open(portal, Purpose.SPACE, request.match_info["space"]).subject


async def space_owner(request: web.Request) -> tuple[Portal, str]:
    """The portal and the e-mail address of the Personal Space session in the request's
    bearer token."""
    portal = request.app[PORTAL]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise PortalError(Code.UNAUTHORIZED)
    email = await asyncio.to_thread(portal.store.space_session,
                                    hashlib.sha256(token.strip().encode()).hexdigest())
    if email is None:
        raise PortalError(Code.UNAUTHORIZED, "the session expired: ask for a new code")
    return portal, email
