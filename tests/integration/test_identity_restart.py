"""A portal restart in the middle of a signer's identity verification (issue 17): the
`qsign portal serve` process is killed (SIGKILL, nothing flushed at exit) after the
document was read and a liveness challenge issued; a new process on the same state
directory shows the session where it was and goes on with the same challenge. Before,
identity sessions lived in the process's memory and the signer had to start again."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.identity.mrz import DocumentFormat
from tests.support.identity_fixtures import make_specimen
from tests.support.pdfs import blank_pdf
from tests.support.ports import free_port
from tests.support.waiting import wait_until


class PortalProcess:
    """`qsign portal serve` on loopback with a state directory that outlives it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = directory / "portal.toml"
        self.config.write_text(f'[portal]\nstate_dir = "{directory / "state"}"\n'
                               f"port = {self.port}\nidentity_accept_specimens = true\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        process = self.process = subprocess.Popen(
            [sys.executable, "-m", "qsign", "portal", "serve", "--config", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def healthy() -> bool:
            assert process.poll() is None, f"the portal exited ({process.returncode})"
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5):  # noqa: S310
                    return True
            except OSError:
                return False

        wait_until(healthy, "the portal's /health", interval=0.1)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def call(self, method: str, path: str, body: Any = None, *, token: bool = False,
             image: bytes | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "image/png" if image else "application/json"}
        if token:
            key = (self.directory / "state" / "requester.token").read_text().strip()
            headers["Authorization"] = f"Bearer {key}"
        data = image if image else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, method=method,  # noqa: S310
                                         headers=headers, data=data)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, answer = self.call(method, path, body, **kwargs)
        assert status in (200, 201), (path, status, answer)
        return answer


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[PortalProcess]:
    running = PortalProcess(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.kill()


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

    portal.kill()
    portal.start()

    after = portal.ok("GET", base)
    assert (after["step"], after["sides"]) == ("liveness", ["data-page"])
    assert after["expiresAt"] == before["expiresAt"]
    again = portal.ok("POST", f"{base}/challenges/next")  # the open one, not a new one
    assert (again["id"], again["nonce"], again["index"]) == (
        challenge["id"], challenge["nonce"], 1)
    assert portal.ok("GET", f"/api/s/{invite}")["enrolment"]["identitySession"] == session
