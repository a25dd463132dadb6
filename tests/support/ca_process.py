"""`qsign ca serve` as a real process on loopback, set up as an operator sets it up:
`qsign ca init`, the simulated cards' manufacturer root and a test identity service
trusted (`start_ca`); `serve_ca` alone starts the service on a directory made before."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from firmware_sim.attestation import Manufacturer
from tests.support.ca_fixtures import IdentityService
from tests.support.cli import run_qsign
from tests.support.ports import free_port
from tests.support.waiting import DEADLINE


def serve_ca(directory: Path, port: int, database_url: str | None = None
             ) -> subprocess.Popen[bytes]:
    """`qsign ca serve` on `directory` once it answers /health; its output goes to
    ca.log beside the directory, shown when it fails to start."""
    log_path = directory.parent / "ca.log"
    command = [sys.executable, "-m", "qsign", "ca", "serve", "--dir", str(directory),
               "--port", str(port)]
    if database_url is not None:
        command += ["--db", database_url]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                        timeout=2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the CA did not start:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.1)


@dataclass
class RunningCa:
    directory: Path
    base: str
    identity: IdentityService
    process: subprocess.Popen[bytes]
    port: int
    database_url: str

    def post(self, path: str, body: bytes, content_type: str,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, data=body, method="POST",  # noqa: S310
                                         headers={"Content-Type": content_type,
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, reply = self.post(path, json.dumps(body).encode(), "application/json")
        answer: dict[str, Any] = json.loads(reply or b"{}")
        return status, answer

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def pem(self, role: str) -> Path:
        return self.directory / "certs" / f"{role}.pem"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def restart(self) -> None:
        """Stop and start `qsign ca serve` again (same port, keys and registry): the CA
        reads its trust lists at start-up."""
        self.stop()
        self.process = serve_ca(self.directory, self.port, self.database_url)

    def issued(self) -> int:
        """How many certificates the CA's registry holds (a SQLite registry)."""
        path = self.database_url.removeprefix("sqlite:///")
        assert path != self.database_url, "issued() reads a SQLite registry"
        with sqlite3.connect(path) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM certificates").fetchone()
        return int(count)


def trust_identity(ca_dir: Path, pem_path: Path) -> None:
    done = run_qsign("ca", "trust-identity", str(pem_path), "--dir", str(ca_dir))
    if done.returncode != 0:
        pytest.fail(f"qsign ca trust-identity: {done.stderr}", pytrace=False)


def start_ca(tmp_path: Path, manufacturer: Manufacturer, identities: Sequence[Path] = (),
             database_url: str | None = None) -> RunningCa:
    """A CA in tmp_path/ca that trusts `manufacturer`'s attestations, a fresh test
    identity service and `identities` (more identity services' PEM certificates); its
    registry at `database_url`, else a SQLite file in tmp_path."""
    port = free_port()
    directory = tmp_path / "ca"
    base = f"http://127.0.0.1:{port}"
    done = run_qsign("ca", "init", "--dir", str(directory), "--base-url", base)
    if done.returncode != 0:
        pytest.fail(f"qsign ca init: {done.stderr}", pytrace=False)
    root = tmp_path / "manufacturer.pem"
    root.write_bytes(manufacturer.root_certificate.public_bytes(Encoding.PEM))
    done = run_qsign("ca", "trust-manufacturer", str(root), "--dir", str(directory))
    if done.returncode != 0:
        pytest.fail(f"qsign ca trust-manufacturer: {done.stderr}", pytrace=False)
    identity = IdentityService()
    (tmp_path / "identity.pem").write_bytes(identity.pem)
    for pem_path in (tmp_path / "identity.pem", *identities):
        trust_identity(directory, pem_path)
    url = database_url or f"sqlite:///{tmp_path / 'ca.sqlite'}"
    return RunningCa(directory, base, identity, serve_ca(directory, port, url), port, url)
