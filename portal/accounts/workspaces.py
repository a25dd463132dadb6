"""Workspaces' rows: the workspaces, their members and roles, invitations by e-mail and
the API tokens bound to one workspace (stored as the SHA-256 of the token)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ground.sql import Cursor
from portal.accounts.model import ApiToken, Invitation, Member, Role, Workspace
from portal.errors import Code, PortalError
from portal.store.records import iso, new_id, when
from portal.store.tables import Tables

_TOKEN = ("SELECT id, user_id, workspace_id, name, created_at, expires_at, last_used_at, "  # noqa: S105
          "revoked_at FROM api_tokens ")


def _workspace(row: Any) -> Workspace:
    return Workspace(row[0], row[1], dt.datetime.fromisoformat(row[2]), when(row[3]))


def _token(row: Any) -> ApiToken:
    return ApiToken(row[0], row[1], row[2], row[3], dt.datetime.fromisoformat(row[4]),
                    dt.datetime.fromisoformat(row[5]), when(row[6]), when(row[7]))


class Workspaces(Tables):
    def create_workspace(self, name: str, owner_id: str | None) -> Workspace:
        """A new workspace; `owner_id` (None for the bootstrap administrator) owns it."""
        now = iso(self.clock())
        workspace_id = new_id()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)",
                        (workspace_id, name, now))
            if owner_id is not None:
                cur.execute("INSERT INTO workspace_members (workspace_id, user_id, role, "
                            "added_at) VALUES (?, ?, ?, ?)",
                            (workspace_id, owner_id, Role.OWNER.label, now))
            return self._workspace(cur, workspace_id)

    @staticmethod
    def _workspace(cur: Cursor, workspace_id: str) -> Workspace:
        cur.execute("SELECT id, name, created_at, suspended_at FROM workspaces WHERE id = ?",
                    (workspace_id,))
        row = cur.fetchone()
        if row is None:
            raise PortalError(Code.NOT_FOUND, "no such workspace")
        return _workspace(row)

    def workspace(self, workspace_id: str) -> Workspace:
        with self.db.transaction() as cur:
            return self._workspace(cur, workspace_id)

    def all_workspaces(self) -> list[Workspace]:
        with self.db.transaction() as cur:
            cur.execute("SELECT id, name, created_at, suspended_at FROM workspaces "
                        "ORDER BY created_at, id")
            return [_workspace(row) for row in cur.fetchall()]

    def workspaces_of(self, user_id: str) -> list[tuple[Workspace, Role]]:
        with self.db.transaction() as cur:
            cur.execute("SELECT w.id, w.name, w.created_at, w.suspended_at, m.role "
                        "FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id "
                        "WHERE m.user_id = ? ORDER BY w.created_at, w.id", (user_id,))
            return [(_workspace(row), Role.parse(row[4])) for row in cur.fetchall()]

    def role_of(self, workspace_id: str, user_id: str) -> Role | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT role FROM workspace_members WHERE workspace_id = ? AND "
                        "user_id = ?", (workspace_id, user_id))
            row = cur.fetchone()
        return None if row is None else Role.parse(row[0])

    def members(self, workspace_id: str) -> list[Member]:
        with self.db.transaction() as cur:
            cur.execute("SELECT u.id, u.email, u.name, m.role, m.added_at "
                        "FROM workspace_members m JOIN users u ON u.id = m.user_id "
                        "WHERE m.workspace_id = ? ORDER BY m.added_at, u.email",
                        (workspace_id,))
            return [Member(r[0], r[1], r[2], Role.parse(r[3]),
                           dt.datetime.fromisoformat(r[4])) for r in cur.fetchall()]

    def set_role(self, workspace_id: str, user_id: str, role: Role | None) -> None:
        """Change a member's role (None: remove them); the last owner stays."""
        with self.db.transaction() as cur:
            cur.execute("SELECT role FROM workspace_members WHERE workspace_id = ? AND "
                        "user_id = ?", (workspace_id, user_id))
            row = cur.fetchone()
            if row is None:
                raise PortalError(Code.NOT_FOUND, "no such member")
            if Role.parse(row[0]) is Role.OWNER and role is not Role.OWNER:
                cur.execute("SELECT COUNT(*) FROM workspace_members WHERE workspace_id = ? "
                            "AND role = ?", (workspace_id, Role.OWNER.label))
                if int(cur.fetchone()[0]) <= 1:
                    raise PortalError(Code.BAD_REQUEST, "role: a workspace keeps at least "
                                      "one owner", field="role")
            if role is None:
                cur.execute("DELETE FROM workspace_members WHERE workspace_id = ? AND "
                            "user_id = ?", (workspace_id, user_id))
                cur.execute("UPDATE api_tokens SET revoked_at = ? WHERE workspace_id = ? "
                            "AND user_id = ? AND revoked_at IS NULL",
                            (iso(self.clock()), workspace_id, user_id))
            else:
                cur.execute("UPDATE workspace_members SET role = ? WHERE workspace_id = ? "
                            "AND user_id = ?", (role.label, workspace_id, user_id))

    # Invitations: an e-mailed single-use link, the role given when it is accepted.

    def add_invitation(self, digest: str, workspace_id: str, email: str, role: Role,
                       invited_by: str, expires_at: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO invitations (digest, workspace_id, email, role, "
                        "invited_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (digest, workspace_id, email.lower(), role.label, invited_by,
                         iso(self.clock()), iso(expires_at)))

    def _invitation(self, cur: Cursor, digest: str) -> Invitation:
        cur.execute("SELECT i.workspace_id, w.name, i.email, i.role, i.invited_by, "
                    "i.expires_at, i.accepted_at FROM invitations i JOIN workspaces w "
                    "ON w.id = i.workspace_id WHERE i.digest = ?", (digest,))
        row = cur.fetchone()
        if row is None or row[6] is not None:
            raise PortalError(Code.LINK_INVALID, "this invitation is not valid or was used")
        expires_at = dt.datetime.fromisoformat(row[5])
        if expires_at <= self.clock():
            raise PortalError(Code.LINK_EXPIRED)
        return Invitation(row[0], row[1], row[2], Role.parse(row[3]), row[4], expires_at)

    def invitation(self, digest: str) -> Invitation:
        with self.db.transaction() as cur:
            return self._invitation(cur, digest)

    def accept_invitation(self, digest: str, user_id: str) -> Invitation:
        """Make `user_id` a member with the invitation's role, once."""
        now = iso(self.clock())
        with self.db.transaction() as cur:
            found = self._invitation(cur, digest)
            cur.execute("UPDATE invitations SET accepted_at = ? WHERE digest = ? AND "
                        "accepted_at IS NULL", (now, digest))
            if cur.rowcount != 1:
                raise PortalError(Code.LINK_INVALID, "this invitation was used")
            cur.execute("SELECT role FROM workspace_members WHERE workspace_id = ? AND "
                        "user_id = ?", (found.workspace_id, user_id))
            if cur.fetchone() is None:
                cur.execute("INSERT INTO workspace_members (workspace_id, user_id, role, "
                            "added_at) VALUES (?, ?, ?, ?)",
                            (found.workspace_id, user_id, found.role.label, now))
            return found

    # API tokens.

    def add_token(self, digest: str, user_id: str, workspace_id: str, name: str,
                  expires_at: dt.datetime) -> ApiToken:
        token_id = new_id()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO api_tokens (id, digest, user_id, workspace_id, name, "
                        "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (token_id, digest, user_id, workspace_id, name, iso(self.clock()),
                         iso(expires_at)))
            cur.execute(_TOKEN + "WHERE id = ?", (token_id,))
            return _token(cur.fetchone())

    def tokens_of(self, user_id: str) -> list[ApiToken]:
        with self.db.transaction() as cur:
            cur.execute(_TOKEN + "WHERE user_id = ? ORDER BY created_at, id", (user_id,))
            return [_token(row) for row in cur.fetchall()]

    def revoke_token(self, user_id: str, token_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) "
                        "WHERE id = ? AND user_id = ?", (iso(self.clock()), token_id, user_id))
            if cur.rowcount != 1:
                raise PortalError(Code.NOT_FOUND, "no such token")

    def live_token(self, digest: str) -> ApiToken | None:
        """The token whose SHA-256 is `digest` if it is neither revoked nor expired; its
        last use is recorded."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute(_TOKEN + "WHERE digest = ?", (digest,))
            row = cur.fetchone()
            if row is None:
                return None
            found = _token(row)
            if found.revoked_at is not None or found.expires_at <= now:
                return None
            cur.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
                        (iso(now), found.id))
            return found

    # Which workspace a transaction belongs to (transactions.workspace_id).

    def workspace_of_transaction(self, tx_id: str) -> str | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT workspace_id FROM transactions WHERE id = ?", (tx_id,))
            row = cur.fetchone()
        return None if row is None else row[0]

    def transaction_ids(self, workspace_id: str) -> list[str]:
        """The workspace's transactions, newest first."""
        with self.db.transaction() as cur:
            cur.execute("SELECT id FROM transactions WHERE workspace_id = ? "
                        "ORDER BY created_at DESC, id", (workspace_id,))
            return [str(row[0]) for row in cur.fetchall()]
