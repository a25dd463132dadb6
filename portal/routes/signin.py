"""Signing in (portal/API.md "Authentication"): e-mail and password then a TOTP code (or
TOTP enrolment for an account that has none yet), sign-out, password reset by an
e-mailed single-use link, and accepting a workspace invitation (which creates the
account). OpenID Connect sign-in is portal/routes/oidc_signin.py.

A browser session is a random secret in an HttpOnly, SameSite=Lax cookie (Secure and
`__Host-` over https); the store keeps its SHA-256, its stage ("totp" and "enrol": a
second factor is still due; "done") and its CSRF synchronizer token. A new secret is
issued at every stage change (OWASP Session Management: renew the id on privilege
change). Requests with no session yet pass the cross-site check (portal/cross_site.py),
so no other site can sign a browser into an account of its choosing."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

from aiohttp import web

from portal.accounts import Accounts, Session, User
from portal.accounts.credentials import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    hash_password,
    matching_step,
    password_matches,
)
from portal.audit import arecord
from portal.body_schema import BodySchema, closed, openapi_component, text
from portal.cross_site import SAFE_METHODS, origin_of
from portal.cross_site import check as cross_site_check
from portal.errors import Code, PortalError
from portal.routes.access import (
    PENDING_LIFETIME,
    SESSION_LIFETIME,
    accounts_of,
    browser_session,
    cookie_name,
    csrf_check,
    digest,
    secure_cookies,
)
from portal.routes.parse import read_body
from portal.routes.state import PORTAL, Portal
from portal.throttle import CoolDown, Throttles
from portal.validating import client_bucket

RESET_LINK = dt.timedelta(hours=1)
INVITATION_LINK = dt.timedelta(days=7)
# Wrong passwords or codes: 5 free, then 1 s doubling to 15 min (NIST SP 800-63B §5.2.2).
SIGN_IN_COOL_DOWN = CoolDown(first=dt.timedelta(seconds=1), cap=dt.timedelta(minutes=15),
                             free=5)
# Wrong tries from one client over any addresses (password spraying, OWASP Authentication
# Cheat Sheet "Account lockout"): 20 free, then the same doubling.
SIGN_IN_CLIENT_COOL_DOWN = CoolDown(first=dt.timedelta(seconds=1),
                                    cap=dt.timedelta(minutes=15), free=20)

EMAIL = openapi_component("Email")
PASSWORD = {"type": "string", "minLength": MIN_PASSWORD, "maxLength": MAX_PASSWORD}
CODE = {"type": "string", "pattern": "^[0-9]{6}$", "description": "six digits"}
NAME = text(200)
PASSWORD_SIGN_IN = BodySchema(closed({"email": EMAIL, "password": {
    "type": "string", "minLength": 1, "maxLength": MAX_PASSWORD}},
    required=["email", "password"]))
TOTP_SIGN_IN = BodySchema(closed({"code": CODE}, required=["code"]))
RESET_ASKED = BodySchema(closed({"email": EMAIL}, required=["email"]))
NEW_PASSWORD = BodySchema(closed({"password": PASSWORD}, required=["password"]))
JOINING = BodySchema(closed({"name": NAME, "password": PASSWORD, "lang": {
    "type": "string", "enum": ["en", "fr"]}}, required=["name", "password"]))


def _no_session_yet(request: web.Request) -> Portal:
    """A request that opens a session comes from the portal's own pages."""
    portal = request.app[PORTAL]
    cross_site_check(request, origin_of(portal.config.base_url))
    return portal


async def open_session(request: web.Request, response: web.StreamResponse, user: User,
                       *, stage: str, via: str) -> None:
    """A new session for `user` at `stage`, its cookie set on `response`; the request's
    current session, if any, ends (a new secret at every change of stage)."""
    store = accounts_of(request.app[PORTAL])
    current = await browser_session(request)
    if current is not None:
        await asyncio.to_thread(store.end_session, current[0])
    secret = secrets.token_urlsafe(32)
    lifetime = SESSION_LIFETIME if stage == "done" else PENDING_LIFETIME
    await asyncio.to_thread(store.open_session, digest(secret), user.id, stage=stage,
                            csrf=secrets.token_urlsafe(32), via=via, lifetime=lifetime)
    response.set_cookie(cookie_name(request), secret, path="/", httponly=True,
                        samesite="Lax", secure=secure_cookies(request),
                        max_age=int(lifetime.total_seconds()))


def _buckets(email: str, remote: str | None) -> tuple[str, ...]:
    """The sign-in cool-down buckets: the address tried and, for a sign-in, the client's
    network (portal/validating.py's bucket: an IPv6 /64, an IPv4 itself)."""
    client = () if remote is None else (f"signin:{client_bucket(remote)}",)
    return (f"signin:{email.lower()}", *client)


def _throttled(store: Accounts, throttles: Throttles, email: str,
               remote: str | None = None) -> None:
    with store.db.transaction() as cur:
        wait = throttles.wait(cur, _buckets(email, remote), store.clock())
    if wait is not None:
        raise PortalError(Code.OTP_THROTTLED, retryAfter=int(wait.total_seconds()) + 1)


def _strike(store: Accounts, throttles: Throttles, email: str,
            remote: str | None = None) -> None:
    by_address, *by_client = _buckets(email, remote)
    with store.db.transaction() as cur:
        throttles.strike(cur, (by_address,), store.clock(), SIGN_IN_COOL_DOWN)
        throttles.strike(cur, tuple(by_client), store.clock(), SIGN_IN_CLIENT_COOL_DOWN)


def _forgive(store: Accounts, throttles: Throttles, email: str) -> None:
    # the client's bucket is kept: one good account must not reset a guesser's count
    with store.db.transaction() as cur:
        throttles.clear(cur, _buckets(email, None))


async def password_sign_in(request: web.Request) -> web.Response:
    """`POST /api/auth/password`: the first factor; the answer's `stage` says what is
    due next ("totp", or "enrol" for an account without a second factor yet)."""
    portal = _no_session_yet(request)
    body = await read_body(request, PASSWORD_SIGN_IN)
    store, throttles = accounts_of(portal), Throttles(portal.store.db)
    email = body["email"].strip().lower()
    await asyncio.to_thread(_throttled, store, throttles, email, request.remote)
    user = await asyncio.to_thread(store.user_by_email, email)
    stored = None if user is None else await asyncio.to_thread(store.password_hash, user.id)
    ok = await asyncio.to_thread(password_matches, stored, body["password"])
    if user is None or not ok or user.suspended_at is not None:
        await asyncio.to_thread(_strike, store, throttles, email, request.remote)
        await arecord(portal.store.db, actor=f"email:{email}", action="auth.sign-in-failed",
                      subject=f"user:{user.id}" if user else f"email:{email}",
                      details={"factor": "password"})
        raise PortalError(Code.UNAUTHORIZED, "wrong e-mail address or password")
    stage = "totp" if user.has_totp else "enrol"
    response = web.json_response({"stage": stage})
    await open_session(request, response, user, stage=stage, via="password")
    return response


async def totp_sign_in(request: web.Request) -> web.Response:
    """`POST /api/auth/totp`: the second factor of a session at stage "totp"."""
    portal = request.app[PORTAL]
    current = await browser_session(request)
    if current is None or current[1].stage != "totp":
        raise PortalError(Code.UNAUTHORIZED, "sign in with your password first")
    csrf_check(request)
    body = await read_body(request, TOTP_SIGN_IN)
    store, throttles = accounts_of(portal), Throttles(portal.store.db)
    user = await asyncio.to_thread(store.user, current[1].user_id)
    await asyncio.to_thread(_throttled, store, throttles, user.email, request.remote)
    secret, _ = await asyncio.to_thread(store.totp, user.id)
    step = None if secret is None else matching_step(secret, body["code"], store.clock())
    if step is None or not await asyncio.to_thread(store.take_totp_step, user.id, step):
        await asyncio.to_thread(_strike, store, throttles, user.email, request.remote)
        await arecord(portal.store.db, actor=f"user:{user.id}", action="auth.sign-in-failed",
                      subject=f"user:{user.id}", details={"factor": "totp"})
        raise PortalError(Code.OTP_INVALID if step is None else Code.OTP_REPLAYED)
    await asyncio.to_thread(_forgive, store, throttles, user.email)
    await arecord(portal.store.db, actor=f"user:{user.id}", action="auth.sign-in",
                  subject=f"user:{user.id}", details={"via": current[1].via})
    response = web.json_response({"stage": "done"})
    await open_session(request, response, user, stage="done", via=current[1].via)
    return response


async def session_view(request: web.Request) -> web.Response:
    """`GET /api/auth/session`: who is signed in, the session's stage and CSRF token,
    their workspaces, and whether OpenID Connect sign-in is offered."""
    portal = request.app[PORTAL]
    oidc = {"enabled": bool(portal.config.oidc_issuer), "name": portal.config.oidc_name}
    current = await browser_session(request)
    if current is None:
        return web.json_response({"stage": "none", "oidc": oidc})
    store = accounts_of(portal)
    user = await asyncio.to_thread(store.user, current[1].user_id)
    view: dict[str, object] = {
        "stage": current[1].stage, "csrf": current[1].csrf, "oidc": oidc,
        "user": {"id": user.id, "email": user.email, "name": user.name, "lang": user.lang,
                 "serviceAdmin": user.is_service_admin}}
    if current[1].stage == "done":
        view["workspaces"] = [{"id": w.id, "name": w.name, "role": role.label,
                               "suspended": w.suspended_at is not None}
                              for w, role in await asyncio.to_thread(store.workspaces_of,
                                                                     user.id)]
    return web.json_response(view)


async def sign_out(request: web.Request) -> web.Response:
    """`POST /api/auth/sign-out`: the session ends in the store, the cookie is dropped."""
    current = await browser_session(request)
    response = web.json_response({"stage": "none"})
    if current is not None:
        csrf_check(request)
        await asyncio.to_thread(accounts_of(request.app[PORTAL]).end_session, current[0])
    response.del_cookie(cookie_name(request), path="/", secure=secure_cookies(request),
                        httponly=True, samesite="Lax")
    return response


async def reset_asked(request: web.Request) -> web.Response:
    """`POST /api/auth/reset`: mail a reset link if the address has an account; the
    answer is the same either way (no address enumeration)."""
    portal = _no_session_yet(request)
    email = (await read_body(request, RESET_ASKED))["email"].strip().lower()
    store, throttles = accounts_of(portal), Throttles(portal.store.db)
    await asyncio.to_thread(_throttled, store, throttles, f"reset:{email}")
    user = await asyncio.to_thread(store.user_by_email, email)
    if user is not None and user.suspended_at is None:
        await asyncio.to_thread(_strike, store, throttles, f"reset:{email}")
        secret = secrets.token_urlsafe(32)
        expires = store.clock() + RESET_LINK
        await asyncio.to_thread(store.add_reset, digest(secret), user.id, expires)
        await portal.mail(user.email, "password-reset", user.lang, name=user.name,
                          expires=expires.strftime("%Y-%m-%d %H:%M UTC"),
                          url=f"{portal.config.base_url}/reset/{secret}")
        await arecord(portal.store.db, actor=f"email:{email}", action="auth.reset-asked",
                      subject=f"user:{user.id}", details={})
    return web.json_response({"sent": True}, status=202)


async def reset_view(request: web.Request) -> web.Response:
    """`GET /api/auth/reset/{token}`: whether the link still works."""
    portal = request.app[PORTAL]
    await asyncio.to_thread(accounts_of(portal).reset_user, digest(request.match_info["token"]))
    return web.json_response({"valid": True})


async def reset_done(request: web.Request) -> web.Response:
    """`POST /api/auth/reset/{token}`: the new password, once; every session of the
    account ends, and the person signs in again (with their second factor)."""
    portal = _no_session_yet(request)
    password = (await read_body(request, NEW_PASSWORD))["password"]
    hashed = await asyncio.to_thread(hash_password, password)
    user_id = await asyncio.to_thread(accounts_of(portal).use_reset,
                                      digest(request.match_info["token"]), hashed)
    await arecord(portal.store.db, actor=f"user:{user_id}", action="auth.password-reset",
                  subject=f"user:{user_id}", details={})
    return web.json_response({"stage": "none"})


async def invitation_view(request: web.Request) -> web.Response:
    """`GET /api/auth/invitations/{token}`: the workspace, address and role invited, and
    whether that address has an account already."""
    store = accounts_of(request.app[PORTAL])
    found = await asyncio.to_thread(store.invitation, digest(request.match_info["token"]))
    known = await asyncio.to_thread(store.user_by_email, found.email)
    return web.json_response({"workspace": found.workspace_name, "email": found.email,
                              "role": found.role.label, "hasAccount": known is not None})


async def invitation_accept(request: web.Request) -> web.Response:
    """`POST /api/auth/invitations/{token}`: a new account (name, password) joins the
    workspace and must enrol a TOTP second factor next (stage "enrol"). An address that
    has an account accepts signed in as that account, with an empty body."""
    portal = request.app[PORTAL]
    store = accounts_of(portal)
    key = digest(request.match_info["token"])
    found = await asyncio.to_thread(store.invitation, key)
    known = await asyncio.to_thread(store.user_by_email, found.email)
    current = await browser_session(request)
    if known is not None:
        if current is None or current[1].stage != "done" or current[1].user_id != known.id:
            raise PortalError(Code.UNAUTHORIZED, f"sign in as {found.email} first")
        csrf_check(request)
        user = known
    else:
        _no_session_yet(request)
        body = await read_body(request, JOINING)
        hashed = await asyncio.to_thread(hash_password, body["password"])
        user = await asyncio.to_thread(
            lambda: store.create_user(email=found.email, name=body["name"].strip(),
                                      lang=body.get("lang", portal.config.default_lang),
                                      password_hash=hashed))
    await asyncio.to_thread(store.accept_invitation, key, user.id)
    await arecord(portal.store.db, actor=f"user:{user.id}", action="workspace.join",
                  subject=f"workspace:{found.workspace_id}",
                  details={"role": found.role.label, "invitedBy": found.invited_by})
    response = web.json_response({"workspace": found.workspace_id,
                                  "stage": "done" if known else "enrol"})
    if known is None:
        await open_session(request, response, user, stage="enrol", via="invitation")
    return response


async def pending_session(request: web.Request, *stages: str) -> tuple[Portal, Session, str]:
    """The portal, the session and its digest, if it is at one of `stages` (CSRF checked
    for a state-changing request)."""
    current = await browser_session(request)
    if current is None or current[1].stage not in stages:
        raise PortalError(Code.UNAUTHORIZED, "sign in first")
    if request.method not in SAFE_METHODS:
        csrf_check(request)
    return request.app[PORTAL], current[1], current[0]


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/api/auth/password", password_sign_in)
    r.add_post("/api/auth/totp", totp_sign_in)
    r.add_get("/api/auth/session", session_view)
    r.add_post("/api/auth/sign-out", sign_out)
    r.add_post("/api/auth/reset", reset_asked)
    r.add_get("/api/auth/reset/{token}", reset_view)
    r.add_post("/api/auth/reset/{token}", reset_done)
    r.add_get("/api/auth/invitations/{token}", invitation_view)
    r.add_post("/api/auth/invitations/{token}", invitation_accept)
