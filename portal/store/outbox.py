"""The outbox: texts (`outbox_sms`) and e-mails (`outbox_mail`) the portal sent or is
sending, in the order it wrote them."""

from __future__ import annotations

import datetime as dt

from ground.sql import Cursor
from portal.store.records import Mail, iso, ordered_id, when
from portal.store.tables import Tables


class Outbox(Tables):
    def sms_sent_since(self, cur: Cursor, phone: str, since: dt.datetime) -> int:
        cur.execute("SELECT COUNT(*) FROM outbox_sms WHERE to_phone = ? AND at >= ?",
                    (phone, iso(since)))
        return int(cur.fetchone()[0])

    def add_sms(self, cur: Cursor, to: str, text: str) -> None:
        cur.execute("INSERT INTO outbox_sms (id, to_phone, text, at) VALUES (?, ?, ?, ?)",
                    (ordered_id(), to, text, iso(self.clock())))

    def sms(self, to: str | None = None) -> list[tuple[str, str, dt.datetime]]:
        with self.db.transaction() as cur:
            if to is None:
                cur.execute("SELECT to_phone, text, at FROM outbox_sms ORDER BY id")
            else:
                cur.execute("SELECT to_phone, text, at FROM outbox_sms WHERE to_phone = ? "
                            "ORDER BY id", (to,))
            return [(p, t, dt.datetime.fromisoformat(at)) for p, t, at in cur.fetchall()]

    def queue_mail(self, to: str, subject: str, body: str, sender_name: str | None = None
                   ) -> str:
        """`sender_name`: the From's display name (a workspace's), else the portal's."""
        mail_id = ordered_id()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO outbox_mail (id, to_addr, subject, body, at, attempts, "
                        "sender_name) VALUES (?, ?, ?, ?, ?, 0, ?)",
                        (mail_id, to, subject, body, iso(self.clock()), sender_name))
        return mail_id

    def mails(self, *, pending: bool = False, to: str | None = None) -> list[Mail]:
        with self.db.transaction() as cur:
            cur.execute("SELECT id, to_addr, subject, body, at, attempts, sent_at, last_error, "
                        "sender_name FROM outbox_mail WHERE (? = 0 OR sent_at IS NULL) "
                        "AND (? = '' OR to_addr = ?) ORDER BY id",
                        (int(pending), to or "", to or ""))
            return [Mail(i, t, s, b, dt.datetime.fromisoformat(at), n, when(sent), err, sender)
                    for i, t, s, b, at, n, sent, err, sender in cur.fetchall()]

    def mail_attempted(self, mail_id: str, error: str | None) -> None:
        with self.db.transaction() as cur:
            if error is None:
                cur.execute("UPDATE outbox_mail SET attempts = attempts + 1, sent_at = ?, "
                            "last_error = NULL WHERE id = ?", (iso(self.clock()), mail_id))
            else:
                cur.execute("UPDATE outbox_mail SET attempts = attempts + 1, last_error = ? "
                            "WHERE id = ?", (error[:500], mail_id))
