"""Who may call which route (portal/API.md "Authentication"): a requester's browser
session or API token and their role in a workspace, the service administrator (the
bootstrap bearer token), a signer's invitation link, a Personal Space link and the
session it opens. The agents' credential at the SMS OTP routes is portal/agent_auth.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac

from aiohttp import web

from portal.accounts import BOOTSTRAP_USER, Accounts, Principal, Role, Session
from portal.cross_site import SAFE_METHODS, origin_of
from portal.cross_site import check as cross_site_check
from portal.errors import Code, PortalError
from portal.links import Link, LinkExpired, LinkInvalid, Purpose
from portal.routes.state import PORTAL, Portal

# A browser session: its idle and absolute lifetimes, and how long a half-done sign-in
# (password given, second factor due) lives.
SESSION_IDLE = dt.timedelta(hours=2)
SESSION_LIFETIME = dt.timedelta(hours=12)
PENDING_LIFETIME = dt.timedelta(minutes=10)
# The cookie's name: the __Host- prefix (RFC 6265bis §4.1.3.2) needs Secure, so plain
# http (tests, loopback demos) uses the bare name.
SECURE_COOKIE = "__Host-qsign-session"
PLAIN_COOKIE = "qsign-session"
CSRF_HEADER = "X-CSRF-Token"
_SESSION: web.RequestKey[tuple[str, Session] | None] = web.RequestKey(
    "qsign_session", object)  # type: ignore[arg-type]  # (digest, Session), looked up once


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


def digest(secret: str) -> str:
    """How a secret (session cookie, API token, link) is stored: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def accounts_of(portal: Portal) -> Accounts:
    """The accounts tables on the portal's database."""
    return Accounts(portal.store.db, portal.store.clock)


def secure_cookies(request: web.Request) -> bool:
    """Cookies get Secure (and the __Host- prefix) when the portal is reached over https."""
    return request.secure or request.app[PORTAL].config.base_url.startswith("https://")


def cookie_name(request: web.Request) -> str:
    return SECURE_COOKIE if secure_cookies(request) else PLAIN_COOKIE


async def browser_session(request: web.Request) -> tuple[str, Session] | None:
    """The live session the request's cookie names (its digest and row), or None."""
    if _SESSION in request:
        found: tuple[str, Session] | None = request[_SESSION]
        return found
    secret = request.cookies.get(cookie_name(request), "")
    found = None
    if secret:
        key = digest(secret)
        row = await asyncio.to_thread(accounts_of(request.app[PORTAL]).session, key,
                                      SESSION_IDLE)
        found = None if row is None else (key, row)
    request[_SESSION] = found
    return found


def _bootstrap() -> Principal:
    return Principal(BOOTSTRAP_USER, "", "Service administrator", True, "bootstrap", None)


async def principal(request: web.Request) -> Principal:
    """Who the request acts as: the bootstrap bearer token, a user's API token
    (`Authorization: Bearer`, RFC 6750 §2.1) or a signed-in browser session (its cookie;
    a state-changing request must then pass `csrf_check`, done here). UNAUTHORIZED
    otherwise, or when the account is suspended."""
    portal = request.app[PORTAL]
    store = accounts_of(portal)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        if hmac.compare_digest(token.encode(), portal.requester_token.encode()):
            return _bootstrap()
        found = await asyncio.to_thread(store.live_token, digest(token))
        if found is None:
            raise PortalError(Code.UNAUTHORIZED, "this token is unknown, expired or revoked")
        user = await asyncio.to_thread(store.user, found.user_id)
        via, bound = "api-token", found.workspace_id
    else:
        session = await browser_session(request)
        if session is None or session[1].stage != "done":
            raise PortalError(Code.UNAUTHORIZED, "sign in first")
        if request.method not in SAFE_METHODS:
            csrf_check(request)
        user = await asyncio.to_thread(store.user, session[1].user_id)
        via, bound = "session", None
    if user.suspended_at is not None:
        raise PortalError(Code.UNAUTHORIZED, "this account is suspended")
    return Principal(user.id, user.email, user.name, user.is_service_admin, via, bound)


async def member(request: web.Request, workspace_id: str, need: Role
                 ) -> tuple[Portal, Principal, Role]:
    """The portal, the principal and their role in `workspace_id`, if it is at least
    `need`. NOT_FOUND when they are not a member (or their token is bound to another
    workspace): whether another workspace exists is never told. FORBIDDEN when the role
    is too low or the workspace is suspended. A service administrator is an owner of
    every workspace."""
    portal = request.app[PORTAL]
    who = await principal(request)
    if who.token_workspace is not None and who.token_workspace != workspace_id:
        raise PortalError(Code.NOT_FOUND, "no such workspace")
    store = accounts_of(portal)
    role = Role.OWNER if who.is_service_admin else await asyncio.to_thread(
        store.role_of, workspace_id, who.user_id)
    if role is None:
        raise PortalError(Code.NOT_FOUND, "no such workspace")
    workspace = await asyncio.to_thread(store.workspace, workspace_id)
    if workspace.suspended_at is not None and not who.is_service_admin:
        raise PortalError(Code.FORBIDDEN, "this workspace is suspended")
    if role < need:
        raise PortalError(Code.FORBIDDEN, f"this needs the {need.label} role or above")
    return portal, who, role


async def service_admin(request: web.Request) -> tuple[Portal, Principal]:
    """The portal and the principal, if they are the service's administrator."""
    who = await principal(request)
    if not who.is_service_admin:
        raise PortalError(Code.FORBIDDEN, "this needs the service administrator")
    return request.app[PORTAL], who


def csrf_check(request: web.Request) -> None:
    """A cookie-authenticated state-changing request must come from the portal's own pages
    (Sec-Fetch-Site / Origin: portal/cross_site.py) and carry the session's synchronizer
    token in `X-CSRF-Token` (OWASP CSRF Prevention, "Synchronizer Token Pattern").
    `principal` calls this itself; a handler that reads the session another way calls it
    after `browser_session`."""
    portal = request.app[PORTAL]
    cross_site_check(request, origin_of(portal.config.base_url))
    session: tuple[str, Session] | None = request.get(_SESSION)
    sent = request.headers.get(CSRF_HEADER, "")
    if session is None or not sent or not hmac.compare_digest(sent.encode(),
                                                              session[1].csrf.encode()):
        raise PortalError(Code.FORBIDDEN, f"{CSRF_HEADER} is missing or wrong: reload "
                          "the page")
