"""`validation_reports`: the report a client address had of a file, by the file's
SHA-256, for the few minutes it may fetch it again in another form
(portal/validating.py), shared by every portal process on the database."""

from __future__ import annotations

import datetime as dt

from portal.store.records import iso
from portal.store.tables import Tables


class ValidationReports(Tables):
    def keep_validation_report(self, bucket: str, sha256: str, report: str) -> None:
        """Keep `report` (JSON text) as `bucket`'s latest of `sha256`."""
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO validation_reports (bucket, sha256, kept_at, report) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (bucket, sha256) DO UPDATE SET "
                        "kept_at = excluded.kept_at, report = excluded.report",
                        (bucket, sha256, iso(self.clock()), report))

    def validation_report(self, bucket: str, sha256: str, kept_since: dt.datetime
                          ) -> str | None:
        """`bucket`'s report of `sha256` if kept since `kept_since`, else None."""
        with self.db.transaction() as cur:
            cur.execute("SELECT report FROM validation_reports WHERE bucket = ? AND "
                        "sha256 = ? AND kept_at >= ?", (bucket, sha256, iso(kept_since)))
            row = cur.fetchone()
            return None if row is None else str(row[0])

    def expire_validation_reports(self, kept_before: dt.datetime) -> None:
        """Forget the reports kept before `kept_before` (the portal's sweeper)."""
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM validation_reports WHERE kept_at < ?",
                        (iso(kept_before),))
