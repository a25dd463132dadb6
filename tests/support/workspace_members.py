"""A workspace member as the requester API sees one, for tests on a running portal
(tests/support/portal_service.py): an account joined by invitation, with an API token."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from portal.accounts import Accounts, Role
from portal.routes.access import digest
from tests.support.portal_service import RunningPortal


async def member_token(portal: RunningPortal, role: Role, workspace: str | None = None
                       ) -> tuple[str, str]:
    """A user with `role` in `workspace` (a new one by default) and an API token of
    theirs bound to it: (workspace id, token)."""
    accounts = Accounts(portal.store.db, portal.store.clock)
    user = accounts.create_user(email=f"{secrets.token_hex(4)}@example.test", name="Ada",
                                lang="en")
    workspace = workspace or accounts.create_workspace("Agence", None).id
    tomorrow = portal.store.clock() + dt.timedelta(days=1)
    invitation = secrets.token_hex(8)  # joined as every member does: by an invitation
    accounts.add_invitation(invitation, workspace, user.email, role, "bootstrap", tomorrow)
    accounts.accept_invitation(invitation, user.id)
    token = secrets.token_urlsafe(24)
    accounts.add_token(digest(token), user.id, workspace, "ci", tomorrow)
    return workspace, token


async def call_as(portal: RunningPortal, token: str, method: str, path: str,
                  expect: int, body: Any = None) -> Any:
    """`method path` with `token` as the bearer; its JSON answer, its status checked."""
    async with portal.session.request(method, portal.url + path, json=body, headers={
            "Authorization": f"Bearer {token}"}) as response:
        answer = await response.json()
        assert response.status == expect, (path, response.status, answer)
        return answer
