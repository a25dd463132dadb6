"""Two portal processes on one database, as behind the load balancer (issue 17, attempts
and sessions): a signer's failing liveness attempts (and document pictures) sent in
turn to one `qsign portal serve` and the other lock the session after the policy's
number of attempts in all, and both processes then refuse it. Before, each process
kept its own copy of the session in memory and wrote it back over the other's: the
attempts one process counted (and its lock) were undone by the other, so the limit
could be walked around by alternating between them.

The specimen passport carries Eileen Collins's NASA portrait (public domain, bundled
with scikit-image).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.identity.http import STATUS
from portal.identity.model import IdentityPolicy
from portal.store import Store
from tests.support.portal_process import (
    PortalProcess,
    at_identity_step,
    at_liveness,
    running_portal,
)

SETTINGS = {"identity_accept_specimens": True}


@pytest.fixture(scope="module")
def portals(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[PortalProcess, PortalProcess]]:
    """Two processes on one state directory (one SQLite database), each its own port."""
    directory = tmp_path_factory.mktemp("portals")
    (directory / "two").mkdir()
    with running_portal(directory, SETTINGS) as one:
        two = PortalProcess(directory / "two", SETTINGS, state=one.state)
        two.start()
        try:
            yield one, two
        finally:
            two.stop()


def _failed_attempt(portal: PortalProcess, base: str) -> tuple[int, Any]:
    """A new series of challenges (one attempt), its first answer bound to another
    nonce: the attempt fails at once (CHALLENGE_BINDING)."""
    challenge = portal.ok("POST", f"{base}/challenges/next")
    return portal.call("POST", f"{base}/challenges/{challenge['id']}", {
        "nonce": "x" + challenge["nonce"], "frames": []})


def test_attempts_alternated_between_two_processes_lock_the_session(
        portals: tuple[PortalProcess, PortalProcess]) -> None:
    one, two = portals
    _, base, _ = at_liveness(one)
    assert two.ok("GET", base)["step"] == "liveness"  # the other process sees the session
    attempts = IdentityPolicy().liveness_attempts
    for attempt in range(1, attempts + 1):
        status, body = _failed_attempt((one, two)[attempt % 2], base)
        assert (status, body["error"]) == (STATUS["CHALLENGE_BINDING"],
                                           "CHALLENGE_BINDING"), body
        assert body.get("locked", False) is (attempt == attempts), (attempt, body)
    _refused_everywhere(portals, base)


def _refused_everywhere(portals: tuple[PortalProcess, PortalProcess], base: str) -> None:
    for portal in (*portals, portals[0]):
        for method, path in (("GET", base), ("POST", f"{base}/challenges/next")):
            status, body = portal.call(method, path)
            assert (status, body["error"]) == (STATUS["IDENTITY_LOCKED"],
                                               "IDENTITY_LOCKED"), (portal.port, path, body)


def test_document_failures_alternated_between_two_processes_lock_the_session(
        portals: tuple[PortalProcess, PortalProcess]) -> None:
    _, session = at_identity_step(portals[0])
    base = f"/api/identity/sessions/{session}"
    failures = IdentityPolicy().max_document_failures
    for attempt in range(1, failures + 1):
        status, body = portals[attempt % 2].call("PUT", f"{base}/sides/data-page",
                                                 image=b"\x89PNG not a picture")
        assert (status, body["error"]) == (STATUS["IMAGE_INVALID"], "IMAGE_INVALID"), body
        assert body.get("locked", False) is (attempt == failures), (attempt, body)
    _refused_everywhere(portals, base)


def test_a_session_is_written_only_at_the_version_read(database_url: str,
                                                       tmp_path: Path) -> None:
    """The compare-and-set's SQL on SQLite and PostgreSQL, each Store a process's
    connection: the second writer of one version loses and writes nothing."""
    one, two = (Store.open(database_url, tmp_path) for _ in range(2))
    try:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
        assert one.save_identity_session("S", "signer", expires, "new", None)
        assert not two.save_identity_session("S", "signer", expires, "again", None)
        assert two.load_identity_session("S") == ("new", 1)
        assert one.save_identity_session("S", "signer", expires, "failed once", 1)
        assert not two.save_identity_session("S", "signer", expires, "stale", 1)
        assert two.load_identity_session("S") == ("failed once", 2)
        assert two.save_identity_session("S", "signer", expires, "locked", 2)
        assert one.load_identity_session("S") == ("locked", 3)
    finally:
        one.close()
        two.close()
