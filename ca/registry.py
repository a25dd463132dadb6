"""The CA registry: every certificate issued, its status, the evidence it used.

SQLite (WAL, synchronous=FULL) by default; PostgreSQL through the same code
when given a `postgresql://` URL. The schema is ca/migrations/, applied when the
registry opens (ground.migrations). Serial allocation and issuance are one
transaction: the certificate is signed inside it and stored before commit, so
an issued certificate is never lost and a serial never reused; a UNIQUE
evidence id makes one identity evidence yield one certificate at most.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from asn1crypto import x509

from ground.migrations import Migrated, Schema, migrate, open_migrated
from ground.sql import Cursor, Database, DatabaseError

REVOCATION_REASONS = (
    "unspecified", "key_compromise", "ca_compromise", "affiliation_changed", "superseded",
    "cessation_of_operation", "certificate_hold", "privilege_withdrawn", "aa_compromise",
)


class RegistryError(Exception):
    """The registry refused (the message says why) or its database failed."""


class EvidenceReused(RegistryError):
    def __init__(self, evidence_id: str) -> None:
        super().__init__(f"identity evidence {evidence_id!r} was already used")
        self.evidence_id = evidence_id


class UnknownSerial(RegistryError):
    def __init__(self, serial: int) -> None:
        super().__init__(f"no certificate with serial {serial:x}")
        self.serial = serial


class Status(Enum):
    GOOD = "good"
    REVOKED = "revoked"


@dataclass(frozen=True)
class CertificateRecord:
    serial: int
    subject: str
    spki_sha256: str
    evidence_id: str
    issued_at: dt.datetime
    not_after: dt.datetime
    der: bytes
    status: Status
    revoked_at: dt.datetime | None
    reason: str | None

    @property
    def certificate(self) -> x509.Certificate:
        return x509.Certificate.load(self.der)


SCHEMA = Schema("ca", "ca")  # ca/migrations/ca-NNNN-*.sql
_COLUMNS = ("serial, subject, spki_sha256, evidence_id, issued_at, not_after, der, status, "
            "revoked_at, reason")


def _select(where: str = "") -> str:
    """SELECT of every column; `where` is always one of this module's constants."""
    return f"SELECT {_COLUMNS} FROM certificates {where}"  # noqa: S608


class Registry:
    """One registry, used from any thread (one connection, serialised)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._dialect = database.dialect
        with self._transaction() as cur:
            for counter in ("status_version", "crl_number"):
                cur.execute("INSERT INTO counters (name, value) VALUES (?, 0) "
                            "ON CONFLICT (name) DO NOTHING", (counter,))

    @staticmethod
    def migrate(url: str | None, directory: Path) -> Migrated:
        """Bring the registry's database to the head of its migrations (`qsign ca
        migrate`; `open` does it too)."""
        try:
            return migrate(url, directory / "registry.sqlite", SCHEMA)
        except DatabaseError as exc:
            raise RegistryError(str(exc)) from exc

    @classmethod
    def open(cls, url: str | None, directory: Path) -> Registry:
        """`postgresql://...`, `sqlite:///path`, or None for DIR/registry.sqlite."""
        try:
            return cls(open_migrated(url, directory / "registry.sqlite", SCHEMA))
        except DatabaseError as exc:
            raise RegistryError(str(exc)) from exc

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> AbstractContextManager[Cursor]:
        return self._db.transaction()

    # Issuance -------------------------------------------------------------------------

    def issue(self, build: Callable[[int], x509.Certificate], *, new_serial: Callable[[], int],
              evidence_id: str, spki_sha256: str) -> CertificateRecord:
        """Allocate a fresh serial, sign with `build(serial)`, store; all in one
        transaction. Raises EvidenceReused if this evidence already gave a certificate.
        Two concurrent transactions can both pass the checks (PostgreSQL, read
        committed): the UNIQUE constraints then decide, and the loser looks again."""
        for _ in range(3):
            try:
                return self._issue_once(build, new_serial, evidence_id, spki_sha256)
            except self._integrity_errors() as exc:
                if self._evidence_used(evidence_id):
                    raise EvidenceReused(evidence_id) from exc
        raise RegistryError("could not allocate a unique serial")

    def _integrity_errors(self) -> tuple[type[Exception], ...]:
        return self._db.integrity_errors()

    def by_evidence(self, evidence_id: str) -> CertificateRecord | None:
        """The certificate a piece of identity evidence gave, if any."""
        with self._transaction() as cur:
            cur.execute(_select("WHERE evidence_id = ?"), (evidence_id,))
            row = cur.fetchone()
        return None if row is None else _record(row)

    def _evidence_used(self, evidence_id: str) -> bool:
        with self._transaction() as cur:
            cur.execute("SELECT 1 FROM certificates WHERE evidence_id = ?", (evidence_id,))
            return cur.fetchone() is not None

    def _issue_once(self, build: Callable[[int], x509.Certificate],
                    new_serial: Callable[[], int], evidence_id: str, spki_sha256: str
                    ) -> CertificateRecord:
        with self._transaction() as cur:
            cur.execute("SELECT serial FROM certificates WHERE evidence_id = ?", (evidence_id,))
            if cur.fetchone() is not None:
                raise EvidenceReused(evidence_id)
            while True:
                serial = new_serial()
                cur.execute("SELECT 1 FROM certificates WHERE serial = ?", (_key(serial),))
                if cur.fetchone() is None:
                    break
            cert = build(serial)
            tbs = cert["tbs_certificate"]
            record = CertificateRecord(
                serial=serial, subject=tbs["subject"].human_friendly, spki_sha256=spki_sha256,
                evidence_id=evidence_id, issued_at=_now(),
                not_after=tbs["validity"]["not_after"].native, der=cert.dump(),
                status=Status.GOOD, revoked_at=None, reason=None)
            cur.execute(
                "INSERT INTO certificates (serial, subject, spki_sha256, evidence_id, issued_at, "
                "not_after, der, status, revoked_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_key(serial), record.subject, spki_sha256, evidence_id,
                 record.issued_at.isoformat(), record.not_after.isoformat(), record.der,
                 Status.GOOD.value, None, None))
            self._bump(cur, "status_version")
            return record

    # Status ---------------------------------------------------------------------------------

    def get(self, serial: int) -> CertificateRecord | None:
        with self._transaction() as cur:
            cur.execute(_select("WHERE serial = ?"), (_key(serial),))
            row = cur.fetchone()
        return None if row is None else _record(row)

    def all(self) -> list[CertificateRecord]:
        with self._transaction() as cur:
            cur.execute(_select("ORDER BY issued_at, serial"))
            return [_record(row) for row in cur.fetchall()]

    def revoked(self) -> list[CertificateRecord]:
        with self._transaction() as cur:
            cur.execute(_select("WHERE status = ? ORDER BY serial"),
                        (Status.REVOKED.value,))
            return [_record(row) for row in cur.fetchall()]

    def revoke(self, serial: int, reason: str, when: dt.datetime | None = None
               ) -> CertificateRecord:
        if reason not in REVOCATION_REASONS:
            raise RegistryError(f"unknown revocation reason {reason!r}")
        with self._transaction() as cur:
            cur.execute(_select("WHERE serial = ?"), (_key(serial),))
            row = cur.fetchone()
            if row is None:
                raise UnknownSerial(serial)
            record = _record(row)
            if record.status is Status.REVOKED:
                return record  # revocation is final; the first date and reason stand
            revoked_at = (when or _now()).astimezone(dt.UTC).replace(microsecond=0)
            cur.execute("UPDATE certificates SET status = ?, revoked_at = ?, reason = ? "
                        "WHERE serial = ?",
                        (Status.REVOKED.value, revoked_at.isoformat(), reason, _key(serial)))
            self._bump(cur, "status_version")
        result = self.get(serial)
        assert result is not None
        return result

    def status_version(self) -> int:
        """Changes whenever any certificate's status changes (OCSP/CRL caches key on it)."""
        with self._transaction() as cur:
            return self._counter(cur, "status_version")

    def next_crl_number(self) -> int:
        with self._transaction() as cur:
            return self._bump(cur, "crl_number")

    def _counter(self, cur: Cursor, name: str) -> int:
        cur.execute("SELECT value FROM counters WHERE name = ?", (name,))
        row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def _bump(self, cur: Cursor, name: str) -> int:
        """Increment in place: the row lock orders concurrent bumps (no lost update)."""
        cur.execute("UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value",
                    (name,))
        return int(cur.fetchone()[0])


def _key(serial: int) -> str:
    return f"{serial:040x}"  # fixed width: text order is numeric order


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _record(row: Any) -> CertificateRecord:
    serial, subject, spki, evidence, issued, not_after, der, status, revoked_at, reason = row
    return CertificateRecord(
        serial=int(serial, 16), subject=subject, spki_sha256=spki, evidence_id=evidence,
        issued_at=dt.datetime.fromisoformat(issued),
        not_after=dt.datetime.fromisoformat(not_after), der=bytes(der),
        status=Status(status),
        revoked_at=dt.datetime.fromisoformat(revoked_at) if revoked_at else None,
        reason=reason)
