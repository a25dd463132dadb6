"""Requesters for tests: users, workspaces and API tokens made straight in a running
portal's store (the sign-in and invitation flows have their own tests)."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import pyotp

from portal.accounts import Accounts, Role, User
from portal.routes.access import digest
from tests.support.pdfs import blank_pdf
from tests.support.portal_service import RunningPortal


def new_transaction(title: str) -> dict[str, Any]:
    """The body of a one-document, one-signer transaction (level B-B: no TSA needed)."""
    return {"title": title,
            "requester": {"name": "Agence", "email": "agence@example.test"},
            "documents": [{"name": "a.pdf",
                           "content": base64.b64encode(blank_pdf(1)).decode()}],
            "signers": [{"name": "Alice Martin", "email": "s1@example.test"}],
            "level": "B-B"}


@dataclass(frozen=True)
class Requester:
    user: User
    workspace: str
    token: str

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def accounts(portal: RunningPortal) -> Accounts:
    return Accounts(portal.store.db, portal.store.clock)


def api_token(portal: RunningPortal, user_id: str, workspace: str,
              days: float = 30) -> str:
    """A fresh API token of `user_id` bound to `workspace`."""
    token = secrets.token_urlsafe(32)
    accounts(portal).add_token(digest(token), user_id, workspace, "test",
                               portal.clock() + dt.timedelta(days=days))
    return token


def requester_in(portal: RunningPortal, email: str, role: Role,
                 workspace: str | None = None) -> Requester:
    """A user with `role` in `workspace` (a new workspace they own when None) and an API
    token bound to it."""
    store = accounts(portal)
    user = store.create_user(email=email, name=email.split("@")[0].title(), lang="en")
    if workspace is None:
        workspace = store.create_workspace(f"{user.name}'s workspace", user.id).id
        if role is not Role.OWNER:
            store.set_role(workspace, user.id, role)  # refused: a workspace keeps an owner
    else:
        store.add_invitation(digest(email), workspace, email, role, "test",
                             portal.clock() + dt.timedelta(days=1))
        store.accept_invitation(digest(email), user.id)
    return Requester(user, workspace, api_token(portal, user.id, workspace))


class Browser:
    """A requester's browser as the API sees it: its own cookie jar (cookies for
    127.0.0.1 kept), and the session's CSRF token sent on every state-changing call
    once `refresh` read it."""

    def __init__(self, portal: RunningPortal) -> None:
        self.portal = portal
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None, *,
                   expect: int | None = 200, csrf: bool = True,
                   headers: dict[str, str] | None = None) -> Any:
        sent = {"Sec-Fetch-Site": "same-origin", **(headers or {})}  # as a browser sends
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            sent["X-CSRF-Token"] = self.csrf
        async with self.session.request(method, self.portal.url + path, json=body,
                                        headers=sent) as response:
            data = await (response.json() if response.content_type == "application/json"
                          else response.read())
            if expect is not None:
                assert response.status == expect, (method, path, response.status, data)
            return data

    async def refresh(self) -> Any:
        """The session view, its CSRF token kept for the next calls."""
        view = await self.call("GET", "/api/auth/session")
        self.csrf = view.get("csrf", "")
        return view

    def code(self, secret: str, steps_later: int = 0) -> str:
        """The TOTP code of `secret` at the portal's clock (RFC 6238)."""
        at = self.portal.clock() + dt.timedelta(seconds=30 * steps_later)
        return str(pyotp.TOTP(secret).at(at))

    async def enrol_totp(self) -> str:
        """Enrol a TOTP secret from a session at stage "enrol"; returns the secret."""
        await self.refresh()
        fresh = await self.call("GET", "/api/account/totp/new")
        await self.call("POST", "/api/account/totp",
                        {"secret": fresh["secret"], "code": self.code(fresh["secret"])})
        await self.refresh()
        return str(fresh["secret"])
