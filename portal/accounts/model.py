"""What the requester's side is made of: roles in a workspace, the principal a request
acts as, and the records of accounts, workspaces and API tokens."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from portal.errors import Code, PortalError

BOOTSTRAP_USER = "bootstrap"  # the principal of the configured bearer token


class Role(enum.IntEnum):
    """A member's role; each includes the rights of those below it."""

    VIEWER = 1  # reads the workspace's transactions
    REQUESTER = 2  # creates, cancels and follows them
    ADMIN = 3  # manages members (not owners)
    OWNER = 4  # everything, owners included

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str, field: str = "role") -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise PortalError(Code.BAD_REQUEST, f"{field}: one of owner, admin, requester, "
                              "viewer", field=field) from None


@dataclass(frozen=True)
class Principal:
    """Who a request acts as. `via`: "session" (a browser's cookie), "api-token" (a user's
    token, bound to `token_workspace`) or "bootstrap" (the configured bearer token, the
    service administrator's first credential)."""

    user_id: str
    email: str
    name: str
    is_service_admin: bool
    via: str
    token_workspace: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"user:{self.user_id}" if self.via != "bootstrap" else "bootstrap"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str
    has_password: bool
    has_totp: bool
    oidc_subject: str | None
    lang: str
    notifications: dict[str, bool]
    is_service_admin: bool
    created_at: dt.datetime
    suspended_at: dt.datetime | None


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    created_at: dt.datetime
    suspended_at: dt.datetime | None


@dataclass(frozen=True)
class Member:
    user_id: str
    email: str
    name: str
    role: Role
    added_at: dt.datetime


@dataclass(frozen=True)
class ApiToken:
    id: str
    user_id: str
    workspace_id: str
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class Session:
    """A browser's session row (the cookie's secret is never stored, only its digest)."""

    user_id: str
    stage: str  # "totp" | "enrol": a factor still due; "done": signed in
    csrf: str
    via: str  # "password" | "oidc" | "invitation"
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class Invitation:
    workspace_id: str
    workspace_name: str
    email: str
    role: Role
    invited_by: str
    expires_at: dt.datetime
