"""The master console's domain (issue 15): the service administrator's view of usage
per month (transactions, signatures, SMS sent, per workspace, counted from the store)
and the suspension of a workspace or a user (portal-0004's `suspended_at`; the access
layer refuses them: portal/routes/access.py `member` and `principal`). Every change is
an audit entry (portal/audit.py), written by the HTTP layer that knows the actor.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ground.sql import Cursor, Database
from portal.enrolment import CODE_PURPOSE
from portal.errors import Code, PortalError
from portal.store.tables import one_row

NO_WORKSPACE = ""  # SMS not tied to a workspace: Personal Space codes
_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Usage:
    month: str  # YYYY-MM (UTC)
    workspace_id: str  # NO_WORKSPACE for Personal Space codes
    transactions: int = 0
    signatures: int = 0  # signed document versions: one PAdES signature each
    sms: int = 0  # SMS codes sent (each send and resend)

    def as_json(self) -> dict[str, Any]:
        return {"month": self.month, "workspace": self.workspace_id or None,
                "transactions": self.transactions, "signatures": self.signatures,
                "sms": self.sms}


def _month(value: str) -> str:
    return value[:7]  # ISO 8601 text: YYYY-MM


def usage(db: Database, since: dt.datetime) -> list[Usage]:
    """Per month and workspace since `since` (UTC), newest month first."""
    after = since.isoformat()
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"transactions": 0, "signatures": 0, "sms": 0})
    with db.transaction() as cur:
        cur.execute("SELECT created_at, workspace_id FROM transactions WHERE created_at >= ?",
                    (after,))
        for at, ws in cur.fetchall():
            counts[_month(at), ws or NO_WORKSPACE]["transactions"] += 1
        cur.execute("SELECT v.created_at, t.workspace_id FROM document_versions v "
                    "JOIN documents d ON d.id = v.document_id "
                    "JOIN transactions t ON t.id = d.transaction_id "
                    "WHERE v.signer_id IS NOT NULL AND v.created_at >= ?", (after,))
        for at, ws in cur.fetchall():
            counts[_month(at), ws or NO_WORKSPACE]["signatures"] += 1
        cur.execute("SELECT o.created_at, t.workspace_id, o.sends FROM otp_sessions o "
                    "JOIN signing_sessions ss ON ss.id = o.subject "
                    "JOIN signers s ON s.id = ss.signer_id "
                    "JOIN transactions t ON t.id = s.transaction_id "
                    "WHERE o.purpose = 'sign' AND o.sends > 0 AND o.created_at >= ?",
                    (after,))
        for at, ws, sends in cur.fetchall():
            counts[_month(at), ws or NO_WORKSPACE]["sms"] += int(sends)
        for at, ws, sends in _enrolment_sms(cur, after):
            counts[_month(at), ws]["sms"] += sends
        cur.execute("SELECT created_at, sends FROM otp_sessions WHERE purpose = 'space' "
                    "AND sends > 0 AND created_at >= ?", (after,))
        for at, sends in cur.fetchall():
            counts[_month(at), NO_WORKSPACE]["sms"] += int(sends)
    return [Usage(month, ws, **values)
            for (month, ws), values in sorted(counts.items(), key=lambda kv: (
                kv[0][0], kv[0][1]), reverse=True)]


def _enrolment_sms(cur: Cursor, after: str) -> list[tuple[str, str, int]]:
    """Token codes of first-time signers: their subject is '<signer id>/<generation>'
    (portal/enrolment.py), so the workspace is found through the signer in Python."""
    cur.execute("SELECT created_at, subject, sends FROM otp_sessions WHERE purpose = ? "
                "AND sends > 0 AND created_at >= ?", (CODE_PURPOSE, after))
    rows = [(at, subject.rpartition("/")[0], int(sends)) for at, subject, sends
            in cur.fetchall()]
    signers = sorted({signer for _, signer, _ in rows})
    workspace: dict[str, str] = {}
    for i in range(0, len(signers), _CHUNK):
        chunk = signers[i:i + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        cur.execute("SELECT s.id, t.workspace_id FROM signers s JOIN transactions t "  # noqa: S608
                    f"ON t.id = s.transaction_id WHERE s.id IN ({marks})", tuple(chunk))
        workspace.update((sid, ws or NO_WORKSPACE) for sid, ws in cur.fetchall())
    return [(at, workspace.get(signer, NO_WORKSPACE), sends) for at, signer, sends in rows]


def set_workspace_suspended(db: Database, workspace_id: str, at: dt.datetime | None
                            ) -> bool:
    """Suspend (`at`) or resume (None) a workspace; whether anything changed."""
    return _set_suspended(db, "workspaces", workspace_id, at, "no such workspace")


def set_user_suspended(db: Database, user_id: str, at: dt.datetime | None) -> bool:
    """Suspend (`at`) or resume (None) a user; whether anything changed."""
    return _set_suspended(db, "users", user_id, at, "no such user")


def _set_suspended(db: Database, table: str, key: str, at: dt.datetime | None,
                   missing: str) -> bool:
    with db.transaction() as cur:
        row = one_row(cur, f"SELECT suspended_at FROM {table} WHERE id = ?",  # noqa: S608
                      (key,), Code.NOT_FOUND, missing)
        if (row[0] is None) == (at is None):
            return False
        cur.execute(f"UPDATE {table} SET suspended_at = ? WHERE id = ?",  # noqa: S608
                    (None if at is None else at.isoformat(), key))
        return True


def users(db: Database) -> list[dict[str, Any]]:
    """Every account: id, e-mail, name, service administrator, suspended since."""
    with db.transaction() as cur:
        cur.execute("SELECT id, email, name, is_service_admin, suspended_at FROM users "
                    "ORDER BY email")
        return [{"id": r[0], "email": r[1], "name": r[2], "serviceAdmin": bool(r[3]),
                 "suspendedAt": r[4]} for r in cur.fetchall()]


def refuse_self(actor_user: str, user_id: str) -> None:
    """An administrator cannot lock themself out through the console."""
    if actor_user == user_id:
        raise PortalError(Code.BAD_REQUEST, "you cannot suspend yourself", field="userId")
