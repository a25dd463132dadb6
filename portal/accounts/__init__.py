"""The requester's side: accounts (e-mail and password with a TOTP second factor, or
OpenID Connect), browser sessions, API tokens, workspaces with members and roles.

The HTTP side is portal/routes/access.py (who a request acts as and what it may do) and
portal/routes/accounts.py (sign-in, settings, tokens, workspaces); the rows are below.
"""

from __future__ import annotations

from portal.accounts.model import (
    BOOTSTRAP_USER,
    ApiToken,
    Invitation,
    Member,
    Principal,
    Role,
    Session,
    User,
    Workspace,
)
from portal.accounts.users import Users
from portal.accounts.workspaces import Workspaces

__all__ = ["BOOTSTRAP_USER", "Accounts", "ApiToken", "Invitation", "Member", "Principal",
           "Role", "Session", "User", "Workspace"]


class Accounts(Users, Workspaces):
    """Every accounts table's queries on the portal's database."""
