"""A portal restart in the middle of a signer's identity verification (issue 17): the
`qsign portal serve` process is killed (SIGKILL, nothing flushed at exit) after the
document was read and a liveness challenge issued; a new process on the same state
directory shows the session where it was and goes on with the same challenge. Before,
identity sessions lived in the process's memory and the signer had to start again."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.identity.mrz import DocumentFormat
from tests.support.identity_fixtures import make_specimen
from tests.support.pdfs import blank_pdf
from tests.support.portal_process import PortalProcess, running_portal


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[PortalProcess]:
    with running_portal(tmp_path, {"identity_accept_specimens": True}) as running:
        yield running


def test_a_restart_keeps_the_identity_session(portal: PortalProcess) -> None:
    tx = portal.ok("POST", "/api/v1/transactions", {
        "title": "Lease", "requester": {"name": "R", "email": "r@example.test"},
        "documents": [{"name": "d.pdf", "content": base64.b64encode(blank_pdf(1)).decode()}],
        "signers": [{"name": "Léa Martin", "email": "s@example.test",
                     "phone": "+33611111111"}], "level": "B-B"}, token=True)
    invite = tx["signers"][0]["inviteUrl"].split("/s/")[1]
    view = portal.ok("GET", f"/api/s/{invite}")
    portal.ok("POST", f"/api/s/{invite}/consents", {"accepted": [
        {k: c[k] for k in ("kind", "version", "sha256")} for c in view["consents"]]})
    step = f"/api/s/{invite}/enrolment"
    portal.ok("POST", f"{step}/start", {})
    view = portal.ok("POST", f"{step}/personal-data", {"correct": True})
    portal.ok("POST", f"{step}/consents", {"accepted": [
        {k: c[k] for k in ("kind", "version", "sha256")}
        for c in view["enrolment"]["consents"]]})
    session = portal.ok("POST", f"{step}/identity", {"document": "passport"})["identitySession"]
    base = f"/api/identity/sessions/{session}"
    page = make_specimen(DocumentFormat.TD3, seed=3).images
    before = portal.ok("PUT", f"{base}/sides/data-page", image=next(iter(page.values())))
    assert before["step"] == "liveness"
    challenge = portal.ok("POST", f"{base}/challenges/next")

    portal.restart()  # SIGKILL, then a new process on the same state

    after = portal.ok("GET", base)
    assert (after["step"], after["sides"]) == ("liveness", ["data-page"])
    assert after["expiresAt"] == before["expiresAt"]
    again = portal.ok("POST", f"{base}/challenges/next")  # the open one, not a new one
    assert (again["id"], again["nonce"], again["index"]) == (
        challenge["id"], challenge["nonce"], 1)
    assert portal.ok("GET", f"/api/s/{invite}")["enrolment"]["identitySession"] == session
