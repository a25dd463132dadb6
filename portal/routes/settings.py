"""Personal settings (portal/API.md "Authentication"): name, language, notification
preferences, password, the TOTP second factor, and API tokens (named, bound to one
workspace, with an expiry; shown once, stored as their SHA-256, listed, revoked). All
need a signed-in browser session: an API token cannot make tokens or change factors."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets

from aiohttp import web

from ground.qr import qr_png
from portal.accounts import ApiToken, Principal, Role
from portal.accounts.credentials import (
    hash_password,
    matching_step,
    new_totp_secret,
    password_matches,
    totp_uri,
)
from portal.accounts.users import DEFAULT_NOTIFICATIONS
from portal.audit import arecord
from portal.body_schema import BodySchema, closed
from portal.errors import Code, PortalError
from portal.routes.access import accounts_of, digest, member, principal
from portal.routes.parse import iso, read_body
from portal.routes.signin import CODE, NAME, PASSWORD, open_session, pending_session
from portal.routes.state import PORTAL, Portal

MAX_TOKEN_DAYS = 366
PROFILE = BodySchema(closed({
    "name": NAME, "lang": {"type": "string", "enum": ["en", "fr"]},
    "notifications": closed({k: {"type": "boolean"} for k in DEFAULT_NOTIFICATIONS})}))
PASSWORD_CHANGE = BodySchema(closed({"current": {"type": "string", "maxLength": 256},
                                     "password": PASSWORD}, required=["current", "password"]))
TOTP_ENROLMENT = BodySchema(closed({
    "secret": {"type": "string", "pattern": "^[A-Z2-7]{32}$",
               "description": "the base32 secret /api/account/totp/new gave"},
    "code": CODE, "currentCode": CODE}, required=["secret", "code"]))
NEW_TOKEN = BodySchema(closed({
    "name": NAME, "workspace": {"type": "string", "minLength": 1, "maxLength": 64},
    "expiresInDays": {"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_DAYS}},
    required=["name", "workspace", "expiresInDays"]))


async def _signed_in(request: web.Request) -> tuple[Portal, Principal]:
    who = await principal(request)
    if who.via != "session":
        raise PortalError(Code.FORBIDDEN, "personal settings need a signed-in browser")
    return request.app[PORTAL], who


def _token_json(token: ApiToken, now: dt.datetime) -> dict[str, object]:
    state = "revoked" if token.revoked_at else "expired" if token.expires_at <= now \
        else "active"
    return {"id": token.id, "name": token.name, "workspace": token.workspace_id,
            "createdAt": iso(token.created_at), "expiresAt": iso(token.expires_at),
            "lastUsedAt": iso(token.last_used_at), "state": state}


async def account_get(request: web.Request) -> web.Response:
    portal, who = await _signed_in(request)
    user = await asyncio.to_thread(accounts_of(portal).user, who.user_id)
    return web.json_response({"id": user.id, "email": user.email, "name": user.name,
                              "lang": user.lang, "notifications": user.notifications,
                              "hasPassword": user.has_password, "hasTotp": user.has_totp,
                              "oidc": user.oidc_subject is not None})


async def account_update(request: web.Request) -> web.Response:
    portal, who = await _signed_in(request)
    body = await read_body(request, PROFILE)
    await asyncio.to_thread(
        lambda: accounts_of(portal).update_profile(
            who.user_id, name=body["name"].strip() if "name" in body else None,
            lang=body.get("lang"), notifications=body.get("notifications")))
    return await account_get(request)


async def password_change(request: web.Request) -> web.Response:
    portal, who = await _signed_in(request)
    body = await read_body(request, PASSWORD_CHANGE)
    store = accounts_of(portal)
    stored = await asyncio.to_thread(store.password_hash, who.user_id)
    if stored is not None and not await asyncio.to_thread(password_matches, stored,
                                                           body["current"]):
        raise PortalError(Code.UNAUTHORIZED, "current: not your password", field="current")
    await asyncio.to_thread(store.set_password, who.user_id,
                            await asyncio.to_thread(hash_password, body["password"]))
    await arecord(portal.store.db, actor=who.actor, action="account.password",
                  subject=f"user:{who.user_id}", details={})
    return web.json_response({"changed": True})


async def totp_new(request: web.Request) -> web.Response:
    """`GET /api/account/totp/new`: a fresh secret, its otpauth URI and QR code, to be
    confirmed with a code it makes (nothing is stored until then)."""
    portal, session, _ = await pending_session(request, "enrol", "done")
    user = await asyncio.to_thread(accounts_of(portal).user, session.user_id)
    secret = new_totp_secret()
    uri = totp_uri(secret, user.email)
    qr = base64.b64encode(await asyncio.to_thread(qr_png, uri)).decode()
    return web.json_response({"secret": secret, "uri": uri,
                              "qr": f"data:image/png;base64,{qr}"})


async def totp_enrol(request: web.Request) -> web.Response:
    """`POST /api/account/totp`: the secret and a code it makes now. Replacing a second
    factor needs a code of the current one too (SECURITY #33); an account at stage
    "enrol" is then signed in."""
    portal, session, _ = await pending_session(request, "enrol", "done")
    body = await read_body(request, TOTP_ENROLMENT)
    store = accounts_of(portal)
    user = await asyncio.to_thread(store.user, session.user_id)
    now = store.clock()
    if user.has_totp:
        current, _ = await asyncio.to_thread(store.totp, user.id)
        step = None if current is None or "currentCode" not in body else \
            matching_step(current, body["currentCode"], now)
        if step is None or not await asyncio.to_thread(store.take_totp_step, user.id, step):
            raise PortalError(Code.OTP_INVALID, "currentCode: a code of your current "
                              "authenticator is needed", field="currentCode")
    step = matching_step(body["secret"], body["code"], now)
    if step is None:
        raise PortalError(Code.OTP_INVALID, "code: not a code of this secret now",
                          field="code")
    await asyncio.to_thread(store.set_totp, user.id, body["secret"], step)
    await arecord(portal.store.db, actor=f"user:{user.id}", action="account.totp",
                  subject=f"user:{user.id}", details={"replaced": user.has_totp})
    response = web.json_response({"stage": "done"})
    if session.stage == "enrol":
        await arecord(portal.store.db, actor=f"user:{user.id}", action="auth.sign-in",
                      subject=f"user:{user.id}", details={"via": session.via})
        await open_session(request, response, user, stage="done", via=session.via)
    return response


async def tokens_list(request: web.Request) -> web.Response:
    portal, who = await _signed_in(request)
    store = accounts_of(portal)
    tokens = await asyncio.to_thread(store.tokens_of, who.user_id)
    return web.json_response({"tokens": [_token_json(t, store.clock()) for t in tokens]})


async def token_create(request: web.Request) -> web.Response:
    """`POST /api/account/tokens`: the token itself is in this answer only."""
    portal, who = await _signed_in(request)
    body = await read_body(request, NEW_TOKEN)
    await member(request, body["workspace"], Role.VIEWER)  # NOT_FOUND for a stranger's
    store = accounts_of(portal)
    secret = "qsk_" + secrets.token_urlsafe(32)  # 256 random bits
    token = await asyncio.to_thread(
        store.add_token, digest(secret), who.user_id, body["workspace"],
        body["name"].strip(), store.clock() + dt.timedelta(days=body["expiresInDays"]))
    await arecord(portal.store.db, actor=who.actor, action="token.create",
                  subject=f"workspace:{token.workspace_id}",
                  details={"token": token.id, "name": token.name,
                           "expiresAt": iso(token.expires_at)})
    return web.json_response({**_token_json(token, store.clock()), "token": secret},
                             status=201)


async def token_revoke(request: web.Request) -> web.Response:
    portal, who = await _signed_in(request)
    token_id = request.match_info["token"]
    await asyncio.to_thread(accounts_of(portal).revoke_token, who.user_id, token_id)
    await arecord(portal.store.db, actor=who.actor, action="token.revoke",
                  subject=f"user:{who.user_id}", details={"token": token_id})
    return web.json_response({"revoked": True})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/api/account", account_get)
    r.add_patch("/api/account", account_update)
    r.add_post("/api/account/password", password_change)
    r.add_get("/api/account/totp/new", totp_new)
    r.add_post("/api/account/totp", totp_enrol)
    r.add_get("/api/account/tokens", tokens_list)
    r.add_post("/api/account/tokens", token_create)
    r.add_delete("/api/account/tokens/{token}", token_revoke)
