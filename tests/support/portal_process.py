"""`qsign portal serve` in its own process on loopback, for tests that kill and restart
it: the state directory and the port outlive the process, so a new process picks up
where the killed one stopped (crash and restart tests).

    portal = PortalProcess(tmp_path, {"identity_accept_specimens": True})
    portal.start()
    ...
    portal.kill()     # SIGKILL: nothing flushed at exit
    portal.start()    # same config, same state directory, same port
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from portal.identity.mrz import DocumentFormat
from tests.support.identity_fixtures import make_specimen
from tests.support.pdfs import blank_pdf
from tests.support.ports import free_port
from tests.support.waiting import wait_until

# Set by a test to make the portal exit at a tear point; never inherited by a restart.
TEAR_VARIABLE = "QSIGN_PORTAL_TEAR"

Setting = str | int | bool | list[str]


class PortalProcess:
    """One portal configuration (directory/portal.toml, state in directory/state) that
    can be started, killed and started again; the output goes to directory/portal.log."""

    def __init__(self, directory: Path, settings: Mapping[str, Setting] | None = None,
                 *, state: Path | None = None) -> None:
        self.directory = directory
        # Another process's `state`: a second portal process on the same database.
        self.state = state or directory / "state"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = directory / "portal.log"
        self.config = directory / "portal.toml"
        # JSON strings, integers, booleans and lists of strings are TOML values as well.
        lines = ["[portal]", f"state_dir = {json.dumps(str(self.state))}",
                 f"port = {self.port}"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in (settings or {}).items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: Mapping[str, str] | None = None) -> None:
        """Start the process (with `env` added to this one's environment) and return once
        it answers /health; fails at once if it exits meanwhile."""
        environment = {k: v for k, v in os.environ.items() if k != TEAR_VARIABLE}
        environment.update(env or {})
        with self.log.open("ab") as log:
            process = self.process = subprocess.Popen(
                [sys.executable, "-m", "qsign", "portal", "serve", "--config",
                 str(self.config)],
                env=environment, stdout=log, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            assert process.poll() is None, (
                f"the portal exited ({process.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5):  # noqa: S310
                    return True
            except OSError:
                return False

        wait_until(healthy, "the portal's /health", interval=0.1)

    def kill(self) -> None:
        """End the process like kill -9: no handler runs, nothing is flushed."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """End the process with SIGTERM (its normal shutdown), SIGKILL if it hangs."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, env: Mapping[str, str] | None = None) -> None:
        """Kill the running process and start a new one on the same state."""
        self.kill()
        self.start(env)

    def requester_token(self) -> str:
        """The requester API key the portal wrote into its state at first start."""
        return (self.state / "requester.token").read_text().strip()

    def call(self, method: str, path: str, body: Any = None, *, token: bool = False,
             bearer: str | None = None, image: bytes | None = None) -> tuple[int, Any]:
        """One request: a JSON body (or a PNG `image`), with the requester's key
        (`token`) or another `bearer`; returns the status and the decoded JSON answer."""
        headers = {"Content-Type": "image/png" if image else "application/json"}
        if token:
            bearer = self.requester_token()
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        data = image if image else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, method=method,  # noqa: S310
                                         headers=headers, data=data)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """`call` that must answer 200 or 201; returns the answer."""
        status, answer = self.call(method, path, body, **kwargs)
        assert status in (200, 201), (path, status, answer)
        return answer


@contextlib.contextmanager
def running_portal(directory: Path, settings: Mapping[str, Setting] | None = None,
                   env: Mapping[str, str] | None = None) -> Iterator[PortalProcess]:
    """A started PortalProcess, stopped (SIGTERM) at the end of the block."""
    portal = PortalProcess(directory, settings)
    portal.start(env)
    try:
        yield portal
    finally:
        portal.stop()


def at_identity_step(portal: PortalProcess, name: str = "Léa Martin") -> tuple[str, str]:
    """A new transaction's signer walked up to identity verification with a passport:
    its invite and the identity session the enrolment opened."""
    pdf = base64.b64encode(blank_pdf(1)).decode()
    tx = portal.ok("POST", "/api/v1/transactions", {
        "title": "Lease", "requester": {"name": "R", "email": "r@example.test"},
        "documents": [{"name": "d.pdf", "content": pdf}],
        "signers": [{"name": name, "email": "s@example.test", "phone": "+33611111111"}],
        "level": "B-B"}, token=True)
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
    return invite, portal.ok("POST", f"{step}/identity",
                             {"document": "passport"})["identitySession"]


def at_liveness(portal: PortalProcess) -> tuple[str, str, Any]:
    """`at_identity_step`, then the specimen passport with the astronaut's portrait read:
    the invite, the identity session's API path, and the session at liveness."""
    invite, session = at_identity_step(portal)
    base = f"/api/identity/sessions/{session}"
    page = make_specimen(DocumentFormat.TD3, seed=3).images
    view = portal.ok("PUT", f"{base}/sides/data-page", image=next(iter(page.values())))
    assert view["step"] == "liveness", view
    return invite, base, view
