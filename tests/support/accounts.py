"""Requesters for tests: users, workspaces and API tokens made straight in a running
portal's store (the sign-in and invitation flows have their own tests)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from portal.accounts import Accounts, Role, User
from portal.routes.access import digest
from tests.support.portal_service import RunningPortal


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
