"""`identity_frames`: the liveness frames' digests the identity service accepted and the
session that sent each (portal/identity/frames.py's `FrameStore`), shared by every
portal process on the database and kept across a restart (issue 17)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from portal.store.records import iso
from portal.store.tables import Tables


class IdentityFrames(Tables):
    def foreign_identity_frames(self, session_id: str, digests: Collection[bytes]) -> bool:
        if not digests:
            return False
        marks = ", ".join("?" * len(digests))
        with self.db.transaction() as cur:
            cur.execute(f"SELECT 1 FROM identity_frames WHERE session_id <> ? "  # noqa: S608
                        f"AND digest IN ({marks}) LIMIT 1", (session_id, *digests))
            return cur.fetchone() is not None

    def claim_identity_frames(self, session_id: str, digests: Collection[bytes],
                              expires_at: dt.datetime) -> bool:
        # The digest is the key: of two processes claiming one frame, the second's insert
        # fails and its whole claim is rolled back.
        try:
            with self.db.transaction() as cur:
                cur.executemany("INSERT INTO identity_frames (digest, session_id, "
                                "expires_at) VALUES (?, ?, ?)",
                                [(d, session_id, iso(expires_at)) for d in digests])
        except self.db.integrity_errors():
            return False
        return True

    def expire_identity_frames(self, now: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM identity_frames WHERE expires_at <= ?", (iso(now),))
