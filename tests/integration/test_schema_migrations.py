"""Schema migrations (ground/migrations.py) for the portal's database and the CA registry,
on SQLite and on PostgreSQL: a database made by the code before migrations (its DDL
copied into schemas_before_migrations/) with rows in it is adopted and brought to the
head with every row intact; a fresh database gets the same schema; concurrent starts
migrate once."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ca.registry import SCHEMA as CA_SCHEMA
from ca.registry import Registry, Status
from ground.migrations import Schema, applied
from ground.sql import Database, DatabaseError
from portal.accounts import Accounts
from portal.intake import kinds_of
from portal.store import SCHEMA as PORTAL_SCHEMA
from portal.store import EnrolmentStep, NewDocument, NewSigner, SignerStatus, Store, TxStatus
from portal.throttle import Throttles
from tests.support.postgres import PrivatePostgres
from tests.support.racing import race

BEFORE = Path(__file__).parent / "schemas_before_migrations"
NOW = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)


def _statements(fixture: str) -> list[str]:
    text = "\n".join(line for line in (BEFORE / fixture).read_text().splitlines()
                     if not line.startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def _old_database(url: str, path: Path, fixture: str) -> Database:
    """The database as the code before migrations made it: its CREATE TABLE IF NOT
    EXISTS statements through ground.sql's `schema`, as it did at every start."""
    return Database.open(url, path, _statements(fixture))


def _new_url(database_url: str, directory: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of the same kind as `database_url`'s."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{directory / 'db.sqlite'}"
    server: PrivatePostgres = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


def _schema_of(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's columns (name, type, NOT NULL, primary key) and constraints, the
    migrations' own tables left out."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with db.transaction() as cur:
        if db.dialect == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for (table,) in cur.fetchall():
                cur.execute(f"PRAGMA table_info({table})")
                columns = [(row[1], row[2], row[3], row[5]) for row in cur.fetchall()]
                cur.execute(f"PRAGMA foreign_key_list({table})")
                keys = [("fk", row[2], row[3], row[4]) for row in cur.fetchall()]
                cur.execute(f"PRAGMA index_list({table})")
                unique = [("unique", row[2], row[3]) for row in cur.fetchall()]
                found[table] = sorted(columns) + sorted(keys) + sorted(unique)
        else:
            cur.execute("SELECT table_name, column_name, data_type, is_nullable "
                        "FROM information_schema.columns WHERE table_schema = 'public'")
            for table, *column in cur.fetchall():
                found.setdefault(table, []).append(tuple(column))
            cur.execute("SELECT tc.table_name, tc.constraint_type, kcu.column_name "
                        "FROM information_schema.table_constraints tc "
                        "JOIN information_schema.key_column_usage kcu "
                        "ON tc.constraint_name = kcu.constraint_name "
                        "WHERE tc.table_schema = 'public'")
            for table, kind, column in cur.fetchall():
                found.setdefault(table, []).append((kind, column))
            found = {t: sorted(v) for t, v in found.items()}
    return {t: v for t, v in found.items() if "_migrations" not in t}


def _head(schema: Schema) -> list[str]:
    return [m.id for m in schema.migrations()]


# The portal -------------------------------------------------------------------------------

_PORTAL_ROWS = [
    ("INSERT INTO transactions (id, title, requester_name, requester_email, status, "
     "created_at, expires_at, sequential, qualified, messaging, level) "
     "VALUES ('tx1', 'Lease', 'Agence', 'agence@example.test', 'open', ?, ?, 1, 1, 1, 'B-LT')",
     (NOW.isoformat(), LATER.isoformat())),
    ("INSERT INTO documents (id, transaction_id, position, name, pages) "
     "VALUES ('doc1', 'tx1', 0, 'lease.pdf', 3)", ()),
    ("INSERT INTO document_versions (document_id, version, sha256, size, signer_id, "
     "created_at) VALUES ('doc1', 0, ?, 1234, NULL, ?)", ("a" * 64, NOW.isoformat())),
    ("INSERT INTO document_versions (document_id, version, sha256, size, signer_id, "
     "created_at) VALUES ('doc1', 1, ?, 5678, 's1', ?)", ("b" * 64, NOW.isoformat())),
    ("INSERT INTO signers (id, transaction_id, position, name, email, phone, lang, status, "
     "generation, accepted_at, signed_at) VALUES ('s1', 'tx1', 0, 'Ada Lovelace', "
     "'ada@example.test', '+33600000001', 'fr', 'signed', 2, ?, ?)",
     (NOW.isoformat(), NOW.isoformat())),
    ("INSERT INTO signers (id, transaction_id, position, name, email, phone, lang, status, "
     "generation) VALUES ('s2', 'tx1', 1, 'Alan Turing', 'alan@example.test', "
     "'+33600000002', 'en', 'invited', 0)", ()),
    ("INSERT INTO consents (signer_id, generation, kind, version, lang, sha256, accepted_at) "
     "VALUES ('s2', 0, 'terms', '3', 'en', ?, ?)", ("c" * 64, NOW.isoformat())),
    ("INSERT INTO messages (id, transaction_id, author, signer_id, name, text, at) VALUES "
     "('0001', 'tx1', 'requester', NULL, 'Agence', 'Page 2, please', ?)", (NOW.isoformat(),)),
    ("INSERT INTO signing_sessions (id, signer_id, generation, created_at, expires_at, "
     "certificate, chain, hashes, state) VALUES ('ss1', 's1', 2, ?, ?, ?, '[]', ?, "
     "'completed')", (NOW.isoformat(), LATER.isoformat(), b"\x30\x82cert", '["aGFzaA=="]')),
    ("INSERT INTO session_documents (session_id, position, document_id, base_version, "
     "prepared_sha256) VALUES ('ss1', 0, 'doc1', 0, ?)", ("d" * 64,)),
    ("INSERT INTO otp_sessions (id, purpose, subject, phone, hashes, sends, failures, "
     "created_at, used_at) VALUES ('otp1', 'sign', 'ss1', '+33600000001', '[]', 1, 0, ?, ?)",
     (NOW.isoformat(), NOW.isoformat())),
    ("INSERT INTO outbox_sms (id, to_phone, text, at) VALUES ('0001', '+33600000001', "
     "'Code 123456', ?)", (NOW.isoformat(),)),
    ("INSERT INTO outbox_mail (id, to_addr, subject, body, at, attempts) VALUES "
     "('0001', 'alan@example.test', 'Please sign', 'Hello', ?, 0)", (NOW.isoformat(),)),
    ("INSERT INTO signer_certificates (email, sha256, der, chain, first_used) VALUES "
     "('ada@example.test', ?, ?, '[]', ?)",
     (hashlib.sha256(b"\x30\x82cert").hexdigest(), b"\x30\x82cert", NOW.isoformat())),
    ("INSERT INTO enrolments (signer_id, step, identity, updated_at) VALUES "
     "('s2', 'identity', '{\"surname\": \"Turing\"}', ?)", (NOW.isoformat(),)),
    ("INSERT INTO space_sessions (digest, email, expires_at) VALUES ('e' , "
     "'ada@example.test', ?)", ((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(),)),
    ("INSERT INTO otp_throttles (bucket, strikes, first_at, last_at, blocked_until) "
     "VALUES ('space:ada@example.test', 3, ?, ?, NULL)", (NOW.isoformat(), NOW.isoformat())),
    ("INSERT INTO document_active_content (sha256, kinds, findings) VALUES (?, "
     "'[\"javascript\"]', '[[\"javascript\", \"/OpenAction\"]]')", ("a" * 64,)),
]


def test_a_portal_database_from_before_migrations_is_adopted_with_its_rows(
        database_url: str, tmp_path: Path) -> None:
    old = _old_database(database_url, tmp_path / "portal.sqlite", "portal.sql")
    with old.transaction() as cur:
        for sql, params in _PORTAL_ROWS:
            cur.execute(sql, params)
    old.close()

    store = Store.open(database_url, tmp_path, clock=lambda: NOW)
    try:
        assert applied(database_url, tmp_path / "portal.sqlite", PORTAL_SCHEMA) == \
            _head(PORTAL_SCHEMA)
        tx = store.transaction("tx1")
        assert (tx.title, tx.status, tx.sequential, tx.level) == ("Lease", TxStatus.OPEN,
                                                                   True, "B-LT")
        [document] = tx.documents
        assert [(v.version, v.sha256, v.size, v.signer_id) for v in document.versions] == [
            (0, "a" * 64, 1234, None), (1, "b" * 64, 5678, "s1")]
        assert [(s.id, s.status, s.generation) for s in tx.signers] == [
            ("s1", SignerStatus.SIGNED, 2), ("s2", SignerStatus.INVITED, 0)]
        accounts = Accounts(store.db, store.clock)  # every transaction from before: "default"
        assert accounts.workspace("default").name == "Default workspace"
        assert accounts.transaction_ids("default") == ["tx1"]
        assert accounts.workspace_of_transaction("tx1") == "default"
        assert [(c.kind, c.version) for c in store.consents("s2", 0)] == [("terms", "3")]
        assert [m.text for m in store.messages("tx1")] == ["Page 2, please"]
        session = store.signing_session("ss1")
        assert (session.certificate, session.state, session.documents) == (
            b"\x30\x82cert", "completed", (("doc1", 0, "d" * 64),))
        assert store.code_verified("ss1")
        assert store.sms("+33600000001")[0][1] == "Code 123456"
        assert [m.subject for m in store.mails(pending=True)] == ["Please sign"]
        assert store.certificates_of("ada@example.test") == [(b"\x30\x82cert", ())]
        enrolment = store.enrolment("s2", 0)
        assert enrolment is not None and enrolment.step is EnrolmentStep.IDENTITY
        assert enrolment.identity == {"surname": "Turing"}
        assert store.space_session("e") == "ada@example.test"
        assert kinds_of(store.db, ["a" * 64]) == {"a" * 64: ["javascript"]}
        with store.db.transaction() as cur:  # three strikes kept: the window counts on
            assert Throttles(store.db).counted(cur, "space:ada@example.test", NOW,
                                               dt.timedelta(hours=1))[0] == 3

        # and the upgraded database takes new rows through today's code
        new = store.create_transaction(
            title="Next", requester_name="Agence", requester_email="agence@example.test",
            documents=[NewDocument("next.pdf", "f" * 64, 10, 1)],
            signers=[NewSigner("Grace Hopper", "grace@example.test", "+33600000003", "en")],
            sequential=False, expires_in=dt.timedelta(days=7), qualified=True,
            messaging=False, level="B-T")
        assert store.transaction(new.id).signers[0].name == "Grace Hopper"
        assert set(accounts.transaction_ids("default")) == {new.id, "tx1"}
    finally:
        store.close()

    again = Store.open(database_url, tmp_path)  # a second start runs nothing
    again.close()
    assert applied(database_url, tmp_path / "portal.sqlite", PORTAL_SCHEMA) == \
        _head(PORTAL_SCHEMA)


@pytest.mark.parametrize("fixture", ["portal.sql", "ca.sql"])
def test_the_first_migration_is_the_schema_from_before_migrations(
        fixture: str, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
        ) -> None:
    start = Store.open if fixture == "portal.sql" else Registry.open
    old_url = _new_url(database_url, tmp_path / "old", request)
    fresh_url = _new_url(database_url, tmp_path / "fresh", request)
    before = _old_database(old_url, tmp_path / "unused", fixture)
    expected = _schema_of(before)
    before.close()
    start(old_url, tmp_path / "old").close()  # adopted
    start(fresh_url, tmp_path / "fresh").close()  # every migration run
    adopted = Database.open(old_url, tmp_path / "unused")
    fresh = Database.open(fresh_url, tmp_path / "unused")
    try:
        kept = _schema_of(adopted)
        assert _schema_of(fresh) == kept  # migrations from nothing: the same schema
        for table, columns in expected.items():  # later migrations only add to it
            assert set(columns) <= set(kept[table]), table
    finally:
        adopted.close()
        fresh.close()


def test_a_database_that_is_half_a_portal_is_refused(database_url: str,
                                                       tmp_path: Path) -> None:
    Database.open(database_url, tmp_path / "portal.sqlite",
                  _statements("portal.sql")[:3]).close()
    with pytest.raises(DatabaseError, match="not a portal database"):
        Store.open(database_url, tmp_path)


def test_concurrent_starts_migrate_once(database_url: str, tmp_path: Path) -> None:
    race(lambda _: Store.open(database_url, tmp_path).close(), range(4))  # raises a failure
    assert applied(database_url, tmp_path / "portal.sqlite", PORTAL_SCHEMA) == \
        _head(PORTAL_SCHEMA)


# The CA registry -------------------------------------------------------------------------


def test_a_ca_registry_from_before_migrations_is_adopted_with_its_rows(
        database_url: str, tmp_path: Path) -> None:
    old = _old_database(database_url, tmp_path / "registry.sqlite", "ca.sql")
    with old.transaction() as cur:
        cur.execute("INSERT INTO certificates (serial, subject, spki_sha256, evidence_id, "
                    "issued_at, not_after, der, status, revoked_at, reason) "
                    "VALUES (?, 'Ada Lovelace', ?, 'ev-1', ?, ?, ?, 'good', NULL, NULL)",
                    (f"{0xABC:040x}", "a" * 64, NOW.isoformat(), LATER.isoformat(),
                     b"\x30\x82der"))
        cur.execute("INSERT INTO counters (name, value) VALUES ('status_version', 5)")
        cur.execute("INSERT INTO counters (name, value) VALUES ('crl_number', 7)")
    old.close()

    registry = Registry.open(database_url, tmp_path)
    try:
        assert applied(database_url, tmp_path / "registry.sqlite", CA_SCHEMA) == \
            _head(CA_SCHEMA)
        record = registry.get(0xABC)
        assert record is not None
        assert (record.subject, record.evidence_id, record.der, record.status) == (
            "Ada Lovelace", "ev-1", b"\x30\x82der", Status.GOOD)
        assert registry.status_version() == 5
        assert registry.next_crl_number() == 8
        assert registry.revoke(0xABC, "key_compromise").status is Status.REVOKED
        assert registry.status_version() == 6
    finally:
        registry.close()


def test_qsign_portal_migrate_adopts_then_has_nothing_to_run(database_url: str,
                                                             tmp_path: Path) -> None:
    _old_database(database_url, tmp_path / "state" / "portal.sqlite", "portal.sql").close()
    config = tmp_path / "portal.toml"
    config.write_text(f'[portal]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'database_url = "{database_url}"\n')
    command = [sys.executable, "-m", "qsign", "portal", "migrate", "--config", str(config)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    head = _head(PORTAL_SCHEMA)[-1]
    assert "adopted the schema from before migrations" in first.stdout
    assert f"ran {', '.join(_head(PORTAL_SCHEMA)[1:])}; at {head}" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"portal database: nothing to run; at {head}"
