"""A workspace's webhooks (`webhooks`), the durable queue of their deliveries
(`webhook_deliveries`) and each attempt's response (`webhook_attempts`, the delivery
log). A delivery is leased by one portal process at a time (`UPDATE ... WHERE` the row
is still pending, due and unleased), so several processes on one database never send it
twice at once; an attempt that fails is retried later with exponential back-off."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ground.sql import Cursor
from portal.errors import Code
from portal.store.records import iso, new_id, ordered_id, when
from portal.store.tables import Tables, one_row

EVENTS = ("viewed", "accepted", "signed", "refused", "completed", "expired", "cancelled")
MAX_ATTEMPTS = 8
MAX_DELAY = dt.timedelta(hours=6)
LEASE = dt.timedelta(seconds=60)  # longer than one HTTP attempt's timeout
_HOOK = "id, workspace_id, url, events, secret, created_by, created_at"


@dataclass(frozen=True)
class Webhook:
    id: str
    workspace_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_by: str
    created_at: dt.datetime


@dataclass(frozen=True)
class Delivery:
    id: str
    webhook_id: str
    url: str
    secret: str
    event: str
    payload: str  # the exact body sent (and signed)
    attempts: int  # including the one leased now


@dataclass(frozen=True)
class Attempt:
    attempt: int
    at: dt.datetime
    status: int | None
    body: str | None
    error: str | None


@dataclass(frozen=True)
class DeliveryLog:
    id: str
    event: str
    transaction_id: str | None
    created_at: dt.datetime
    state: str  # pending | delivered | failed
    attempts: tuple[Attempt, ...]
    next_at: dt.datetime | None


def _webhook(row: Any) -> Webhook:
    return Webhook(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5],
                   dt.datetime.fromisoformat(row[6]))


def backoff(attempts: int, base: dt.timedelta) -> dt.timedelta:
    """The wait after the `attempts`-th failure: base, 2 base, 4 base, ... at most 6 h."""
    delay: dt.timedelta = base * (2 ** (attempts - 1))
    return min(delay, MAX_DELAY)


class Webhooks(Tables):
    def add_webhook(self, workspace_id: str, url: str, events: list[str], secret: str,
                    created_by: str) -> Webhook:
        hook_id = new_id()
        with self.db.transaction() as cur:
            cur.execute(f"INSERT INTO webhooks ({_HOOK}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                        (hook_id, workspace_id, url, json.dumps(events), secret, created_by,
                         iso(self.clock())))
            return self._webhook(cur, workspace_id, hook_id)

    def webhooks(self, workspace_id: str) -> list[Webhook]:
        with self.db.transaction() as cur:
            cur.execute(f"SELECT {_HOOK} FROM webhooks WHERE workspace_id = ? AND "  # noqa: S608
                        "deleted_at IS NULL ORDER BY created_at, id", (workspace_id,))
            return [_webhook(row) for row in cur.fetchall()]

    def webhook(self, workspace_id: str, hook_id: str) -> Webhook:
        with self.db.transaction() as cur:
            return self._webhook(cur, workspace_id, hook_id)

    def _webhook(self, cur: Cursor, workspace_id: str, hook_id: str) -> Webhook:
        # Another workspace's webhook is NOT_FOUND, as one that does not exist.
        return _webhook(one_row(cur, f"SELECT {_HOOK} FROM webhooks WHERE id = ? AND "  # noqa: S608
                                "workspace_id = ? AND deleted_at IS NULL",
                                (hook_id, workspace_id), Code.NOT_FOUND, "no such webhook"))

    def update_webhook(self, workspace_id: str, hook_id: str, *, url: str | None,
                       events: list[str] | None) -> Webhook:
        with self.db.transaction() as cur:
            hook = self._webhook(cur, workspace_id, hook_id)
            cur.execute("UPDATE webhooks SET url = ?, events = ? WHERE id = ?",
                        (url or hook.url, json.dumps(events or list(hook.events)), hook_id))
            return self._webhook(cur, workspace_id, hook_id)

    def delete_webhook(self, workspace_id: str, hook_id: str) -> None:
        """No more deliveries; the log stays."""
        with self.db.transaction() as cur:
            self._webhook(cur, workspace_id, hook_id)
            cur.execute("UPDATE webhooks SET deleted_at = ? WHERE id = ?",
                        (iso(self.clock()), hook_id))
            cur.execute("UPDATE webhook_deliveries SET state = 'failed' WHERE webhook_id = ? "
                        "AND state = 'pending'", (hook_id,))

    def queue_event(self, workspace_id: str, event: str, transaction_id: str | None,
                    data: dict[str, Any], *, once: str | None = None) -> list[str]:
        """One delivery per webhook of the workspace that takes `event`; their ids.
        `once`: a signer's id; nothing when this event about them was queued before."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event}")
        now = self.clock()
        queued = []
        with self.db.transaction() as cur:
            if once is not None:
                # The payload is compact JSON with the signer's object first in its data.
                cur.execute("SELECT 1 FROM webhook_deliveries WHERE transaction_id = ? AND "
                            "event = ? AND payload LIKE ? LIMIT 1",
                            (transaction_id, event, f'%"signer":{{"id":{json.dumps(once)}%'))
                if cur.fetchone() is not None:
                    return []
            cur.execute("SELECT id, events FROM webhooks WHERE workspace_id = ? AND "
                        "deleted_at IS NULL", (workspace_id,))
            for hook_id, events in cur.fetchall():
                if event not in json.loads(events):
                    continue
                delivery_id = ordered_id()
                payload = json.dumps({"id": delivery_id, "event": event,
                                      "createdAt": iso(now), "workspaceId": workspace_id,
                                      "data": data}, separators=(",", ":"))
                cur.execute("INSERT INTO webhook_deliveries (id, webhook_id, event, "
                            "transaction_id, payload, created_at, state, attempts, next_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
                            (delivery_id, hook_id, event, transaction_id, payload, iso(now),
                             iso(now)))
                queued.append(delivery_id)
        return queued

    def lease_deliveries(self, limit: int = 20) -> list[Delivery]:
        """Due deliveries, each leased to this process by an UPDATE that only one
        process's can win; its attempt is counted now (a crash mid-attempt counts)."""
        now = self.clock()
        leased = []
        with self.db.transaction() as cur:
            cur.execute("SELECT d.id FROM webhook_deliveries d WHERE d.state = 'pending' AND "
                        "d.next_at <= ? AND (d.lease_until IS NULL OR d.lease_until <= ?) "
                        "ORDER BY d.next_at, d.id LIMIT ?", (iso(now), iso(now), limit))
            candidates = [row[0] for row in cur.fetchall()]
        for delivery_id in candidates:
            with self.db.transaction() as cur:
                cur.execute("UPDATE webhook_deliveries SET lease_until = ?, attempts = "
                            "attempts + 1 WHERE id = ? AND state = 'pending' AND next_at <= ?"
                            " AND (lease_until IS NULL OR lease_until <= ?)",
                            (iso(now + LEASE), delivery_id, iso(now), iso(now)))
                if cur.rowcount != 1:
                    continue  # another process took it
                cur.execute("SELECT d.id, d.webhook_id, w.url, w.secret, d.event, d.payload, "
                            "d.attempts FROM webhook_deliveries d JOIN webhooks w ON "
                            "w.id = d.webhook_id WHERE d.id = ?", (delivery_id,))
                row = cur.fetchone()
                leased.append(Delivery(row[0], row[1], row[2], row[3], row[4], row[5],
                                       int(row[6])))
        return leased

    def delivery_attempted(self, delivery: Delivery, *, status: int | None, body: str | None,
                           error: str | None, retry_base: dt.timedelta) -> None:
        """Log the attempt; delivered on a 2xx, else due again after the back-off, or
        failed after MAX_ATTEMPTS."""
        now = self.clock()
        delivered = status is not None and 200 <= status < 300
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO webhook_attempts (delivery_id, attempt, at, status, body, "
                        "error) VALUES (?, ?, ?, ?, ?, ?)",
                        (delivery.id, delivery.attempts, iso(now), status,
                         None if body is None else body[:500],
                         None if error is None else error[:500]))
            if delivered:
                cur.execute("UPDATE webhook_deliveries SET state = 'delivered', "
                            "delivered_at = ?, lease_until = NULL WHERE id = ?",
                            (iso(now), delivery.id))
            elif delivery.attempts >= MAX_ATTEMPTS:
                cur.execute("UPDATE webhook_deliveries SET state = 'failed', lease_until = NULL"
                            " WHERE id = ?", (delivery.id,))
            else:
                cur.execute("UPDATE webhook_deliveries SET next_at = ?, lease_until = NULL "
                            "WHERE id = ?",
                            (iso(now + backoff(delivery.attempts, retry_base)), delivery.id))

    def delivery_log(self, workspace_id: str, hook_id: str, limit: int = 100
                     ) -> list[DeliveryLog]:
        """The webhook's latest deliveries, newest first, with every attempt."""
        with self.db.transaction() as cur:
            self._webhook(cur, workspace_id, hook_id)
            cur.execute("SELECT id, event, transaction_id, created_at, state, next_at FROM "
                        "webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?",
                        (hook_id, limit))
            rows = cur.fetchall()
            log = []
            for delivery_id, event, tx_id, created, state, next_at in rows:
                cur.execute("SELECT attempt, at, status, body, error FROM webhook_attempts "
                            "WHERE delivery_id = ? ORDER BY attempt", (delivery_id,))
                attempts = tuple(Attempt(int(a), dt.datetime.fromisoformat(at), s, b, e)
                                 for a, at, s, b, e in cur.fetchall())
                log.append(DeliveryLog(delivery_id, event, tx_id,
                                       dt.datetime.fromisoformat(created), state, attempts,
                                       when(next_at) if state == "pending" else None))
            return log
