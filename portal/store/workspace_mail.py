"""A workspace's mail settings (`workspace_mail`): the sender's display name and its own
texts for the mails its signers receive (portal/workspace_mail.py composes them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from portal.store.records import iso
from portal.store.tables import Tables


@dataclass(frozen=True)
class MailSettings:
    sender_name: str | None = None
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> subject, body


class WorkspaceMail(Tables):
    def mail_settings(self, workspace_id: str) -> MailSettings:
        with self.db.transaction() as cur:
            cur.execute("SELECT sender_name, texts FROM workspace_mail WHERE workspace_id = ?",
                        (workspace_id,))
            row = cur.fetchone()
        return MailSettings() if row is None else MailSettings(row[0], json.loads(row[1]))

    def set_mail_settings(self, workspace_id: str, settings: MailSettings) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO workspace_mail (workspace_id, sender_name, texts, "
                        "updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id) DO UPDATE "
                        "SET sender_name = excluded.sender_name, texts = excluded.texts, "
                        "updated_at = excluded.updated_at",
                        (workspace_id, settings.sender_name, json.dumps(settings.texts),
                         iso(self.clock())))

    def transaction_mail(self, tx_id: str) -> tuple[MailSettings, str | None]:
        """The mail settings of the transaction's workspace and its invitation message."""
        with self.db.transaction() as cur:
            cur.execute("SELECT w.sender_name, w.texts, p.message FROM transactions t "
                        "LEFT JOIN workspace_mail w ON w.workspace_id = t.workspace_id "
                        "LEFT JOIN transaction_parameters p ON p.transaction_id = t.id "
                        "WHERE t.id = ?", (tx_id,))
            row = cur.fetchone()
        if row is None:
            return MailSettings(), None
        return MailSettings(row[0], json.loads(row[1]) if row[1] else {}), row[2]
