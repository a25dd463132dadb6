"""ground.sql, the one database layer: on the agent's shared SQLite file a commit without
its own fsync survives kill -9, `sync()` fsyncs the WAL, stores share one file, and an
earlier agent's otp.sqlite is imported once; its cursor counts rows and takes batches
with '?' placeholders on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.identity.otp import OtpStore, TotpVerifier
from agent.journal import SignatureJournal
from agent.policy import SadIssuer
from ground.sql import Database

SCHEMA = ("CREATE TABLE IF NOT EXISTS t (x INTEGER)",)


def test_a_non_durable_commit_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    child = (
        "import os, signal, sys\n"
        "from ground.sql import Database\n"
        "db = Database.sqlite(sys.argv[1], ['CREATE TABLE IF NOT EXISTS t (x INTEGER)'])\n"
        "with db.transaction(durable=False) as cur:\n"
        "    cur.execute('INSERT INTO t VALUES (7)')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run([sys.executable, "-c", child, str(path)],
                            cwd=Path(__file__).parents[2], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr
    db = Database.sqlite(path, SCHEMA)
    try:
        with db.transaction() as cur:
            assert cur.execute("SELECT x FROM t").fetchall() == [(7,)]
            # the safety level is back to FULL after a non-durable transaction
            assert cur.execute("PRAGMA synchronous").fetchone() == (2,)
    finally:
        db.close()


def test_sync_fsyncs_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database.sqlite(tmp_path / "db.sqlite", SCHEMA)
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    try:
        with db.transaction(durable=False) as cur:
            cur.execute("INSERT INTO t VALUES (1)")
        monkeypatch.setattr(os, "fsync", spy)
        db.sync()
        assert synced == [str(tmp_path / "db.sqlite-wal")]
    finally:
        db.close()


def test_stores_share_one_file(tmp_path: Path) -> None:
    journal = SignatureJournal(tmp_path)
    otp = OtpStore(journal.db)
    sads = SadIssuer(journal.db)
    try:
        TotpVerifier(otp).enrol("piv-1/9C")
        sads.issue(credential_id="piv-1/9C", hashes=[bytes(32)], origin="https://a.test",
                   num_signatures=1)
        with journal.db.transaction() as cur:
            tables = {r[0] for r in cur.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"signatures", "sad", "otp_totp", "otp_failures"} <= tables
        assert sorted(p.name for p in tmp_path.glob("*.sqlite")) == ["journal.sqlite"]
    finally:
        otp.close()  # does not close the shared file
        sads.close()
        with journal.db.transaction() as cur:
            cur.execute("SELECT 1")
        journal.close()


def test_an_earlier_otp_file_is_imported_once(tmp_path: Path) -> None:
    legacy = tmp_path / "otp.sqlite"
    with OtpStore(legacy) as old:
        enrolment = TotpVerifier(old).enrol("piv-1/9C")
    journal = SignatureJournal(tmp_path)
    try:
        store = OtpStore(journal.db, legacy=legacy)
        assert not legacy.exists() and (tmp_path / "otp.sqlite.migrated").exists()
        import pyotp

        TotpVerifier(store).verify("piv-1/9C", pyotp.TOTP(enrolment.secret).now())
        OtpStore(journal.db, legacy=legacy)  # nothing left to import: no error
    finally:
        journal.close()


def test_the_cursor_counts_rows_and_takes_batches(database_url: str, tmp_path: Path) -> None:
    db = Database.open(database_url, tmp_path / "unused.sqlite", SCHEMA)
    try:
        with db.transaction(durable=False) as cur:
            cur.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
            cur.execute("UPDATE t SET x = x + 10 WHERE x >= ?", (2,))
            assert cur.rowcount == 2
        db.sync()  # after a commit without its fsync (nothing owed on PostgreSQL)
        db.add_schema(["CREATE TABLE IF NOT EXISTS u (y INTEGER)"])
        with db.transaction() as cur:
            cur.execute("DELETE FROM t WHERE x > ?", (10,))
            assert cur.rowcount == 2
            cur.execute("SELECT x FROM t")
            assert cur.fetchall() == [(1,)]
            cur.execute("SELECT count(*) FROM u")
            assert cur.fetchone() == (0,)
        assert (db.path is None) == database_url.startswith("postgresql")
    finally:
        db.close()
