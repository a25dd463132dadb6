"""Liveness frames replayed into another identity session across a portal restart
(issue 17, "frames from another session fail"): the document holder's frames accepted
in session A are sent, after `qsign portal serve` was killed and started again on the
same database, as the answer of session B's challenge. They are refused as in one
process (FRAMES_REPLAYED): the digests of accepted frames are in the portal's database
(identity_frames), which a restart and every other portal process share. Before, they
were in the process's memory, and the new process judged them as fresh frames.

The specimen passport carries Eileen Collins's NASA portrait (public domain, bundled
with scikit-image); the selfie frames are synthesised from it (tests/support/selfies.py).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.identity.http import STATUS
from portal.store import Store
from tests.support.identity_fixtures import selfie
from tests.support.portal_process import PortalProcess, at_liveness, running_portal
from tests.support.waiting import wait_until


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[PortalProcess]:
    with running_portal(tmp_path, {"identity_accept_specimens": True}) as running:
        yield running


def _answer(portal: PortalProcess, base: str, frames: list[bytes] | None
            ) -> tuple[int, Any, list[bytes]]:
    """The next challenge answered with `frames` (None: the holder doing what it asks)
    once a person could have acted (the service's min_answer_seconds)."""
    challenge = portal.ok("POST", f"{base}/challenges/next")
    ready = dt.datetime.fromisoformat(challenge["issuedAt"]) + dt.timedelta(seconds=1.2)
    wait_until(lambda: dt.datetime.now(dt.UTC) >= ready, "a person's answer time")
    sent = selfie(challenge["action"]) if frames is None else frames
    status, body = portal.call("POST", f"{base}/challenges/{challenge['id']}", {
        "nonce": challenge["nonce"], "frames": [base64.b64encode(f).decode() for f in sent]})
    return status, body, sent


def test_frames_of_one_session_are_refused_in_another_after_a_restart(
        portal: PortalProcess) -> None:
    _, first, _ = at_liveness(portal)
    status, body, recorded = _answer(portal, first, None)
    assert status == 200 and body["step"] == "liveness", body

    portal.restart()  # SIGKILL, then a new process on the same database

    _, second, _ = at_liveness(portal)
    status, body, _ = _answer(portal, second, recorded)
    assert (status, body.get("error")) == (STATUS["FRAMES_REPLAYED"], "FRAMES_REPLAYED"), body
    assert portal.ok("GET", second)["step"] == "liveness"


def test_two_portals_on_one_database_share_the_frames(database_url: str,
                                                      tmp_path: Path) -> None:
    """The ledger's SQL on SQLite and PostgreSQL, each Store a process's connection."""
    one, two = (Store.open(database_url, tmp_path) for _ in range(2))
    try:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
        a, b, c, d = (bytes([i]) * 32 for i in range(4))
        assert one.claim_identity_frames("A", {a, b}, expires)
        assert two.foreign_identity_frames("B", {c, a})
        assert not two.foreign_identity_frames("A", {a, b, c})
        # A frame answers once, whichever session sends it again; a claim is all or none.
        assert not two.claim_identity_frames("B", {b, c}, expires)
        assert not one.claim_identity_frames("A", {a, d}, expires)
        assert two.claim_identity_frames("B", {c, d}, expires)
        one.expire_identity_frames(expires)
        assert not one.foreign_identity_frames("A", {c, d})
    finally:
        one.close()
        two.close()
