"""The audit log (portal/audit.py): a hash chain that `verify` and `qsign portal audit
verify` check, on SQLite and PostgreSQL; an entry edited, deleted or moved by SQL is
named; appends from two processes at once keep one chain."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal import audit
from portal.store import Store
from tests.support.cli import run_qsign
from tests.support.waiting import DEADLINE


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(database_url, tmp_path / "state")
    yield opened
    opened.close()


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        audit.record(store.db, actor="user:u1", action="session.sign-in",
                     subject=f"user:u{i}", details={"ip": "192.0.2.1", "n": i, "é": "ü"})


def _cli(database_url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "portal.toml"
    config.write_text(f'[portal]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'database_url = "{database_url}"\n')
    return run_qsign("portal", "audit", "verify", "--config", str(config), *extra)


def test_an_edited_row_is_named_by_verify_and_the_cli(store: Store, database_url: str,
                                                      tmp_path: Path) -> None:
    _fill(store, 4)
    result = audit.verify(store.db)
    assert (result.ok, result.entries, result.head.seq) == (True, 4, 4)
    ok = _cli(database_url, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert f"head {result.head}" in ok.stdout

    with store.db.transaction() as cur:
        cur.execute("UPDATE audit_log SET subject = ? WHERE seq = ?", ("user:mallory", 3))
    result = audit.verify(store.db)
    assert (result.ok, result.first_bad) == (False, 3)
    assert "changed" in (result.reason or "")
    broken = _cli(database_url, tmp_path)
    assert broken.returncode == 1
    assert "BROKEN at seq 3" in broken.stdout


def test_a_deleted_or_moved_row_is_found(store: Store) -> None:
    _fill(store, 5)
    with store.db.transaction() as cur:  # swap entries 2 and 3 whole, hashes included
        cur.execute("UPDATE audit_log SET seq = 100 WHERE seq = 2")
        cur.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3")
        cur.execute("UPDATE audit_log SET seq = 3 WHERE seq = 100")
    assert audit.verify(store.db).first_bad == 2
    with store.db.transaction() as cur:
        cur.execute("UPDATE audit_log SET seq = 100 WHERE seq = 2")
        cur.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3")
        cur.execute("UPDATE audit_log SET seq = 3 WHERE seq = 100")
        cur.execute("DELETE FROM audit_log WHERE seq = 4")
    result = audit.verify(store.db)
    assert (result.ok, result.first_bad) == (False, 4)
    assert "missing" in (result.reason or "")


def test_removed_newest_entries_are_found_against_a_kept_head(store: Store) -> None:
    _fill(store, 3)
    kept = audit.verify(store.db).head
    with store.db.transaction() as cur:
        cur.execute("DELETE FROM audit_log WHERE seq = 3")
    assert audit.verify(store.db).ok  # a shorter chain is still a chain
    result = audit.verify(store.db, expect=audit.Head.parse(str(kept)))
    assert (result.ok, result.first_bad) == (False, 3)


def test_the_anchored_head_finds_removed_newest_entries(store: Store, database_url: str,
                                                       tmp_path: Path) -> None:
    anchor = tmp_path / "state" / audit.ANCHOR_FILE
    anchor.parent.mkdir(exist_ok=True)  # the portal's state directory
    _fill(store, 2)
    assert audit.anchor(store.db, anchor) == audit.verify(store.db).head
    _fill(store, 2)
    assert audit.anchor(store.db, anchor) == audit.Head(4, audit.verify(store.db).head.hash)
    with store.db.transaction() as cur:
        cur.execute("DELETE FROM audit_log WHERE seq >= 3")
    assert audit.anchor(store.db, anchor) is None  # the evidence stays as it was
    kept = audit.read_anchor(anchor)
    assert kept is not None and kept.seq == 4
    broken = _cli(database_url, tmp_path)  # no --expect: the anchor file is read
    assert broken.returncode == 1
    assert "BROKEN at seq 3" in broken.stdout


_APPEND = """
import sys
from pathlib import Path
from ground.sql import Database
from portal import audit
db = Database.open(sys.argv[1], Path(sys.argv[1].removeprefix("sqlite:///")))
for i in range(int(sys.argv[3])):
    audit.record(db, actor=sys.argv[2], action="token.create", subject=f"token:{i}",
                 details={"i": i})
db.close()
"""


def test_two_processes_appending_at_once_keep_one_chain(store: Store,
                                                        database_url: str) -> None:
    n = 40
    children = [subprocess.Popen([sys.executable, "-c", _APPEND, database_url, who, str(n)],
                                 stderr=subprocess.PIPE, text=True) for who in ("p1", "p2")]
    for child in children:
        _, err = child.communicate(timeout=DEADLINE)
        assert child.returncode == 0, err
    result = audit.verify(store.db)
    assert (result.ok, result.entries) == (True, 2 * n), result
    actors = [e.actor for e in audit.entries(store.db, limit=2 * n)]
    assert actors.count("p1") == actors.count("p2") == n
