"""A portal restart in the middle of a signer's identity verification (issue 17): the
`qsign portal serve` process is killed (SIGKILL, nothing flushed at exit) after the
document was read and a liveness challenge issued; a new process on the same state
directory shows the session where it was and goes on with the same challenge. Before,
identity sessions lived in the process's memory and the signer had to start again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.portal_process import PortalProcess, at_liveness, running_portal


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[PortalProcess]:
    with running_portal(tmp_path, {"identity_accept_specimens": True}) as running:
        yield running


def test_a_restart_keeps_the_identity_session(portal: PortalProcess) -> None:
    invite, base, before = at_liveness(portal)
    challenge = portal.ok("POST", f"{base}/challenges/next")
    assert challenge["frames"] == {"min": 4, "max": 24}  # the policy's frames_per_answer

    portal.restart()  # SIGKILL, then a new process on the same state

    after = portal.ok("GET", base)
    assert (after["step"], after["sides"]) == ("liveness", ["data-page"])
    assert after["expiresAt"] == before["expiresAt"]
    again = portal.ok("POST", f"{base}/challenges/next")  # the open one, not a new one
    assert (again["id"], again["nonce"], again["index"]) == (
        challenge["id"], challenge["nonce"], 1)
    enrolment = portal.ok("GET", f"/api/s/{invite}")["enrolment"]
    assert enrolment["identitySession"] == base.rsplit("/", 1)[1]
