"""OpenID Connect sign-in (portal/API.md "Authentication"): `GET /api/auth/oidc/start`
sends the browser to the organisation's provider, `GET /api/auth/oidc/callback` brings
it back with a code (portal/accounts/oidc.py checks everything), and a session opens
for the account that the provider's subject is linked to, or whose address the provider
verified (then linked). The provider is trusted for the second factor. No account is
made here but through an invitation (`?join=`): people join by invitation only.

The sign-in is kept in the store under its `state` (any portal process may take the
callback) and bound to the browser that started it by a short cookie holding the same
state, so a callback URL made in another browser signs nobody in (login CSRF, RFC 6749
§10.12)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging

from aiohttp import web

from portal.accounts.oidc import OidcClient, OidcError, OidcIdentity, client_for
from portal.audit import arecord
from portal.errors import Code, PortalError
from portal.routes.access import accounts_of, digest, secure_cookies
from portal.routes.signin import open_session
from portal.routes.state import PORTAL, Portal

log = logging.getLogger(__name__)

SIGN_IN_WINDOW = dt.timedelta(minutes=10)
STATE_COOKIE = "qsign-oidc"
JOIN_COOKIE = "qsign-oidc-join"  # the invitation a sign-in accepts
CALLBACK = "/api/auth/oidc/callback"
AFTER_SIGN_IN = "/requester"


def oidc_client(portal: Portal) -> OidcClient:
    config = portal.config
    if not (config.oidc_issuer and config.oidc_client_id):
        raise PortalError(Code.NOT_FOUND, "OpenID Connect sign-in is not configured")
    secret = config.oidc_client_secret or (
        config.oidc_client_secret_file.read_text().strip()
        if config.oidc_client_secret_file else "")
    return client_for(config.oidc_issuer, config.oidc_client_id, secret,
                      config.base_url + CALLBACK)


async def oidc_start(request: web.Request) -> web.StreamResponse:
    """`?join=<invitation>`: the person joins a workspace with this identity (its
    verified address must be the invited one)."""
    portal = request.app[PORTAL]
    client = oidc_client(portal)
    join = request.query.get("join", "")
    if join:  # a dead invitation is told now, not after the provider
        await asyncio.to_thread(accounts_of(portal).invitation, digest(join))
    try:
        sent = await client.authorization()
    except (OidcError, OSError) as exc:
        log.warning("OpenID Connect provider unavailable: %s", exc)
        raise PortalError(Code.UNAVAILABLE, "the sign-in provider cannot be reached") from exc
    store = accounts_of(portal)
    await asyncio.to_thread(store.add_oidc_login, sent.state, sent.nonce, sent.verifier,
                            store.clock() + SIGN_IN_WINDOW)
    response = _redirect(sent.url)
    for name, value in ((STATE_COOKIE, sent.state), (JOIN_COOKIE, join)):
        if value:
            response.set_cookie(name, value, path=CALLBACK, httponly=True, samesite="Lax",
                                secure=secure_cookies(request),
                                max_age=int(SIGN_IN_WINDOW.total_seconds()))
    return response


def _redirect(url: str) -> web.Response:
    return web.Response(status=302, headers={"Location": url})


def _back(error: str) -> web.Response:
    return _redirect(f"/signin?error={error}")


async def oidc_callback(request: web.Request) -> web.StreamResponse:
    """The provider's redirect (Core §3.1.2.5); errors go back to the sign-in page with
    their code."""
    portal = request.app[PORTAL]
    client = oidc_client(portal)
    store = accounts_of(portal)
    state, code = request.query.get("state", ""), request.query.get("code", "")
    cookie_nonce = request.cookies.get(STATE_COOKIE, "")  # OIDC's state: a CSRF nonce
    if not state or not cookie_nonce or not hmac.compare_digest(state.encode(),
                                                                cookie_nonce.encode()):
        return _back("LINK_INVALID")
    kept = await asyncio.to_thread(store.take_oidc_login, state)
    if kept is None:
        return _back("LINK_EXPIRED")
    if "error" in request.query or not code:
        return _back("UNAUTHORIZED")
    nonce, verifier = kept
    try:
        who = await client.identity(code, verifier, nonce)
    except (OidcError, OSError) as exc:
        log.warning("OpenID Connect sign-in refused: %s", exc)
        await arecord(portal.store.db, actor=f"oidc:{client.issuer}",
                      action="auth.sign-in-failed", subject=f"oidc:{client.issuer}",
                      details={"factor": "oidc", "reason": str(exc)[:200]})
        return _back("UNAUTHORIZED")
    join = request.cookies.get(JOIN_COOKIE, "")
    if join:
        try:
            await _join(portal, join, who)
        except PortalError as exc:
            return _back(exc.code.value)
    user = await asyncio.to_thread(store.user_by_oidc, who.subject)
    if user is None and who.email and who.email_verified:
        user = await asyncio.to_thread(store.user_by_email, who.email)
        if user is not None and user.oidc_subject is None:
            await asyncio.to_thread(store.link_oidc, user.id, who.subject)
        elif user is not None:
            user = None  # linked to another subject of this or another provider
    if user is None or user.suspended_at is not None:
        await arecord(portal.store.db, actor=f"oidc:{who.subject}",
                      action="auth.sign-in-failed", subject=f"email:{who.email}",
                      details={"factor": "oidc", "reason": "no account"})
        return _back("FORBIDDEN")
    await arecord(portal.store.db, actor=f"user:{user.id}", action="auth.sign-in",
                  subject=f"user:{user.id}", details={"via": "oidc"})
    response = _redirect(AFTER_SIGN_IN)
    await open_session(request, response, user, stage="done", via="oidc")
    response.del_cookie(STATE_COOKIE, path=CALLBACK)
    response.del_cookie(JOIN_COOKIE, path=CALLBACK)
    return response


async def _join(portal: Portal, join: str, who: OidcIdentity) -> None:
    """Accept invitation `join` for the provider's identity: its verified address must be
    the invited one; the account is made (no password: the provider signs it in) or the
    one with that address is linked."""
    store = accounts_of(portal)
    found = await asyncio.to_thread(store.invitation, digest(join))
    if not (who.email_verified and who.email == found.email):
        raise PortalError(Code.FORBIDDEN, "the provider's address is not the invited one")
    user = await asyncio.to_thread(store.user_by_email, found.email)
    if user is None:
        user = await asyncio.to_thread(
            lambda: store.create_user(email=found.email, name=who.name,
                                      lang=portal.config.default_lang,
                                      oidc_subject=who.subject))
    elif user.oidc_subject is None:
        await asyncio.to_thread(store.link_oidc, user.id, who.subject)
    elif user.oidc_subject != who.subject:
        raise PortalError(Code.FORBIDDEN, "this account is linked to another identity")
    await asyncio.to_thread(store.accept_invitation, digest(join), user.id)
    await arecord(portal.store.db, actor=f"user:{user.id}", action="workspace.join",
                  subject=f"workspace:{found.workspace_id}",
                  details={"role": found.role.label, "invitedBy": found.invited_by,
                           "via": "oidc"})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/auth/oidc/start", oidc_start)
    r.add_get(CALLBACK, oidc_callback)
