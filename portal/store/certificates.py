"""`signer_certificates`: every certificate a signer's address signed or enrolled with,
and its chain, for Personal Space and for the holder check."""

from __future__ import annotations

import datetime as dt

from ground.sql import Cursor
from portal.store.records import ders, iso, unders
from portal.store.tables import Tables


class SignerCertificates(Tables):
    @staticmethod
    def _keep_certificate(cur: Cursor, email: str, sha256: str, der: bytes,
                          chain: list[bytes] | tuple[bytes, ...], now: dt.datetime) -> None:
        """The first use of a certificate by this address stays; later ones add nothing."""
        cur.execute("INSERT INTO signer_certificates (email, sha256, der, chain, "
                    "first_used) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (email, sha256) DO NOTHING",
                    (email.lower(), sha256, der, ders(chain), iso(now)))

    def certificates_of(self, email: str) -> list[tuple[bytes, tuple[bytes, ...]]]:
        """(certificate, its chain) for each certificate this address signed with."""
        with self.db.transaction() as cur:
            cur.execute("SELECT der, chain FROM signer_certificates WHERE email = ? "
                        "ORDER BY first_used", (email.lower(),))
            return [(bytes(der), unders(chain)) for der, chain in cur.fetchall()]
