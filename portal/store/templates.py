"""A workspace's templates (`templates`: a saved transaction, its body as JSON) and bulk
sends (`bulk_sends`, one `bulk_rows` row per CSV line). The rows are the work: a portal
process leases a pending row (`UPDATE ... WHERE` it is still pending and unleased),
starts its transaction and marks it done or failed, so a restart, or another process,
resumes where the work stopped."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ground.sql import Cursor
from portal.errors import Code, PortalError
from portal.store.records import iso, new_id
from portal.store.tables import Tables, one_row

ROW_LEASE = dt.timedelta(minutes=5)  # a row a crashed process held is taken again after
MAX_ROW_ATTEMPTS = 3
_TEMPLATE = "id, workspace_id, name, body, created_by, created_at, updated_at, revision"


@dataclass(frozen=True)
class Template:
    id: str
    workspace_id: str
    name: str
    body: dict[str, Any]  # portal/API.md `Template` without id and name
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    revision: int


@dataclass(frozen=True)
class BulkRow:
    line: int  # the CSV line (the header is line 1)
    signers: list[dict[str, Any]]
    state: str  # pending | done | failed
    transaction_id: str | None
    error: str | None


@dataclass(frozen=True)
class BulkSend:
    id: str
    workspace_id: str
    template_id: str
    template: dict[str, Any]  # the template's body when the CSV came
    requester: dict[str, str]
    created_by: str
    created_at: dt.datetime
    rows: tuple[BulkRow, ...]


@dataclass(frozen=True)
class LeasedRow:
    bulk: BulkSend  # its `rows` empty: only the send's own fields
    line: int
    signers: list[dict[str, Any]]
    attempts: int


def _template(row: Any) -> Template:
    return Template(row[0], row[1], row[2], json.loads(row[3]), row[4],
                    dt.datetime.fromisoformat(row[5]), dt.datetime.fromisoformat(row[6]),
                    int(row[7]))


class Templates(Tables):
    def add_template(self, workspace_id: str, name: str, body: dict[str, Any],
                     created_by: str) -> Template:
        now = iso(self.clock())
        template_id = new_id()
        with self.db.transaction() as cur:
            cur.execute(f"INSERT INTO templates ({_TEMPLATE}) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",  # noqa: S608
                        (template_id, workspace_id, name, json.dumps(body), created_by, now,
                         now))
            return self._template(cur, workspace_id, template_id)

    def templates(self, workspace_id: str) -> list[Template]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT {_TEMPLATE} FROM templates WHERE workspace_id = ? AND "  # noqa: S608
                        "deleted_at IS NULL ORDER BY name, id", (workspace_id,))
            return [_template(row) for row in cur.fetchall()]

    def template(self, workspace_id: str, template_id: str) -> Template:
        with self.db.transaction() as cur:
            return self._template(cur, workspace_id, template_id)

    @staticmethod
    def _template(cur: Cursor, workspace_id: str, template_id: str) -> Template:
        # Another workspace's template is NOT_FOUND, as one that does not exist.
        return _template(one_row(cur, f"SELECT {_TEMPLATE} FROM templates WHERE id = ? AND "  # noqa: S608
                                 "workspace_id = ? AND deleted_at IS NULL",
                                 (template_id, workspace_id), Code.NOT_FOUND,
                                 "no such template"))

    def update_template(self, workspace_id: str, template_id: str, name: str,
                        body: dict[str, Any], revision: int | None) -> Template:
        """`revision`: the one the editor read; CONFLICT when someone saved meanwhile."""
        with self.db.transaction() as cur:
            current = self._template(cur, workspace_id, template_id)
            if revision is not None and revision != current.revision:
                raise PortalError(Code.CONFLICT, "someone changed this template meanwhile: "
                                  "reload it", field="revision")
            cur.execute("UPDATE templates SET name = ?, body = ?, updated_at = ?, "
                        "revision = revision + 1 WHERE id = ?",
                        (name, json.dumps(body), iso(self.clock()), template_id))
            return self._template(cur, workspace_id, template_id)

    def delete_template(self, workspace_id: str, template_id: str) -> None:
        with self.db.transaction() as cur:
            self._template(cur, workspace_id, template_id)
            cur.execute("UPDATE templates SET deleted_at = ? WHERE id = ?",
                        (iso(self.clock()), template_id))

    def add_bulk(self, template: Template, requester: dict[str, str], created_by: str,
                 rows: list[tuple[int, list[dict[str, Any]]]]) -> BulkSend:
        """rows: (CSV line, the signers of its transaction), all pending."""
        bulk_id = new_id()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO bulk_sends (id, workspace_id, template_id, template, "
                        "requester, created_by, created_at, row_count) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (bulk_id, template.workspace_id, template.id,
                         json.dumps(template.body), json.dumps(requester), created_by,
                         iso(self.clock()), len(rows)))
            cur.executemany("INSERT INTO bulk_rows (bulk_id, line, signers, state, attempts) "
                            "VALUES (?, ?, ?, 'pending', 0)",
                            [(bulk_id, line, json.dumps(signers)) for line, signers in rows])
            return self._bulk(cur, template.workspace_id, bulk_id)

    def bulk(self, workspace_id: str, bulk_id: str) -> BulkSend:
        with self.db.transaction() as cur:
            return self._bulk(cur, workspace_id, bulk_id)

    def _bulk(self, cur: Cursor, workspace_id: str, bulk_id: str, *, rows: bool = True
              ) -> BulkSend:
        head = one_row(cur, "SELECT id, workspace_id, template_id, template, requester, "
                       "created_by, created_at FROM bulk_sends WHERE id = ? AND "
                       "workspace_id = ?", (bulk_id, workspace_id), Code.NOT_FOUND,
                       "no such bulk send")
        found: tuple[BulkRow, ...] = ()
        if rows:
            cur.execute("SELECT line, signers, state, transaction_id, error FROM bulk_rows "
                        "WHERE bulk_id = ? ORDER BY line", (bulk_id,))
            found = tuple(BulkRow(int(r[0]), json.loads(r[1]), r[2], r[3], r[4])
                          for r in cur.fetchall())
        return BulkSend(head[0], head[1], head[2], json.loads(head[3]), json.loads(head[4]),
                        head[5], dt.datetime.fromisoformat(head[6]), found)

    def lease_bulk_rows(self, limit: int = 10) -> list[LeasedRow]:
        """Pending rows, each leased to this process by an UPDATE only one can win."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("SELECT r.bulk_id, r.line, b.workspace_id FROM bulk_rows r JOIN "
                        "bulk_sends b ON b.id = r.bulk_id WHERE r.state = 'pending' AND "
                        "(r.lease_until IS NULL OR r.lease_until <= ?) "
                        "ORDER BY b.created_at, r.bulk_id, r.line LIMIT ?", (iso(now), limit))
            candidates = cur.fetchall()
        leased = []
        for bulk_id, line, workspace_id in candidates:
            with self.db.transaction() as cur:
                cur.execute("UPDATE bulk_rows SET lease_until = ?, attempts = attempts + 1 "
                            "WHERE bulk_id = ? AND line = ? AND state = 'pending' AND "
                            "(lease_until IS NULL OR lease_until <= ?)",
                            (iso(now + ROW_LEASE), bulk_id, line, iso(now)))
                if cur.rowcount != 1:
                    continue
                cur.execute("SELECT signers, attempts FROM bulk_rows WHERE bulk_id = ? AND "
                            "line = ?", (bulk_id, line))
                signers, attempts = cur.fetchone()
                leased.append(LeasedRow(self._bulk(cur, workspace_id, bulk_id, rows=False),
                                        int(line), json.loads(signers), int(attempts)))
        return leased

    def bulk_row_done(self, bulk_id: str, line: int, *, transaction_id: str | None,
                      error: str | None, retry: bool = False) -> None:
        """The row's transaction, or its error: failed for good unless `retry` (a
        passing fault: pending again for the next lease, at most MAX_ROW_ATTEMPTS)."""
        with self.db.transaction() as cur:
            if retry:
                cur.execute("UPDATE bulk_rows SET error = ?, lease_until = NULL, state = "
                            "CASE WHEN attempts >= ? THEN 'failed' ELSE 'pending' END "
                            "WHERE bulk_id = ? AND line = ? AND state = 'pending'",
                            (error, MAX_ROW_ATTEMPTS, bulk_id, line))
                return
            cur.execute("UPDATE bulk_rows SET state = ?, transaction_id = ?, error = ?, "
                        "done_at = ?, lease_until = NULL WHERE bulk_id = ? AND line = ? "
                        "AND state = 'pending'",
                        ("done" if error is None else "failed", transaction_id, error,
                         iso(self.clock()), bulk_id, line))

    @staticmethod
    def bulk_row_started(cur: Cursor, bulk_id: str, line: int, transaction_id: str) -> None:
        """Inside the transaction that creates the line's transaction: done, or CONFLICT
        (rolling it back) when another process finished the line first."""
        cur.execute("UPDATE bulk_rows SET state = 'done', transaction_id = ?, error = NULL, "
                    "lease_until = NULL, done_at = (SELECT created_at FROM transactions "
                    "WHERE id = ?) WHERE bulk_id = ? AND line = ? AND state = 'pending'",
                    (transaction_id, transaction_id, bulk_id, line))
        if cur.rowcount != 1:
            raise PortalError(Code.CONFLICT, f"bulk line {line} was sent already")

    def bulk_sends(self, workspace_id: str, template_id: str) -> list[tuple[str, dt.datetime]]:
        """(id, created at) of a template's bulk sends, newest first."""
        with self.db.transaction() as cur:
            cur.execute("SELECT id, created_at FROM bulk_sends WHERE workspace_id = ? AND "
                        "template_id = ? ORDER BY created_at DESC, id",
                        (workspace_id, template_id))
            return [(i, dt.datetime.fromisoformat(at)) for i, at in cur.fetchall()]

