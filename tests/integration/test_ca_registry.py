"""The CA registry, the same suite on SQLite and on PostgreSQL (a private cluster)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from asn1crypto import x509

from ca.authority import Authority
from ca.profiles import Validity, natural_person_name, qualified_certificate, random_serial
from ca.registry import EvidenceReused, Registry, RegistryError, Status, UnknownSerial
from tests.support.racing import race


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.init(tmp_path_factory.mktemp("ca") / "ca")


def _builder(authority: Authority):  # type: ignore[no-untyped-def]
    public_key = authority.keys["ocsp"].public_key_info  # any key will do for the registry

    def build(serial: int) -> x509.Certificate:
        return qualified_certificate(
            serial=serial, subject=natural_person_name(
                given_name="Ada", surname="Lovelace", serial_number="PASGB-1234567",
                country="GB"),
            public_key=public_key, issuer=authority.issuing,
            issuer_key=authority.keys["issuing"], validity=Validity.starting_now(30),
            points=authority.config.points)

    return build


def test_issue_get_revoke(authority: Authority, database_url: str, tmp_path: Path) -> None:
    registry = Registry.open(database_url, tmp_path)
    build = _builder(authority)
    version = registry.status_version()
    record = registry.issue(build, new_serial=random_serial, evidence_id="ev-00000001",
                            spki_sha256="a" * 64)
    assert registry.status_version() > version
    assert registry.get(record.serial) == record
    assert x509.Certificate.load(record.der).serial_number == record.serial
    with pytest.raises(EvidenceReused):
        registry.issue(build, new_serial=random_serial, evidence_id="ev-00000001",
                       spki_sha256="b" * 64)
    revoked = registry.revoke(record.serial, "key_compromise")
    assert revoked.status is Status.REVOKED and revoked.reason == "key_compromise"
    again = registry.revoke(record.serial, "superseded")  # the first revocation stands
    assert (again.reason, again.revoked_at) == ("key_compromise", revoked.revoked_at)
    assert [r.serial for r in registry.revoked()] == [record.serial]
    with pytest.raises(UnknownSerial):
        registry.revoke(record.serial + 1, "unspecified")
    with pytest.raises(RegistryError):
        registry.revoke(record.serial, "because")
    assert registry.next_crl_number() < registry.next_crl_number()
    registry.close()
    reopened = Registry.open(database_url, tmp_path)
    assert reopened.get(record.serial) == revoked
    reopened.close()


def test_serial_collisions_are_retried(authority: Authority, database_url: str,
                                       tmp_path: Path) -> None:
    registry = Registry.open(database_url, tmp_path)
    serials = iter([7 << 100, 7 << 100, 9 << 100])
    first = registry.issue(_builder(authority), new_serial=lambda: next(serials),
                           evidence_id="ev-collision-1", spki_sha256="c" * 64)
    second = registry.issue(_builder(authority), new_serial=lambda: next(serials),
                            evidence_id="ev-collision-2", spki_sha256="d" * 64)
    assert (first.serial, second.serial) == (7 << 100, 9 << 100)
    registry.close()


def test_concurrent_issuance_gives_unique_serials(authority: Authority, database_url: str,
                                                  tmp_path: Path) -> None:
    registries = [Registry.open(database_url, tmp_path) for _ in range(4)]

    def worker(index: int) -> None:
        for n in range(10):
            registries[index].issue(_builder(authority), new_serial=random_serial,
                                    evidence_id=f"ev-{index}-{n:04d}", spki_sha256="e" * 64)

    race(worker, range(4))  # raises what any worker raised
    records = registries[0].all()
    assert len(records) == 40 and len({r.serial for r in records}) == 40
    for registry in registries:
        registry.close()


_CRASH_DRIVER = """
import sys
from pathlib import Path
from ca.authority import Authority
from ca.registry import Registry
from ca.profiles import random_serial
sys.path.insert(0, {root!r})
from tests.integration.test_ca_registry import _builder
authority = Authority.load(Path({ca!r}))
registry = Registry.open({url!r}, Path({tmp!r}))
build = _builder(authority)
n = 0
while True:
    registry.issue(build, new_serial=random_serial, evidence_id=f"ev-crash-{{n:06d}}",
                   spki_sha256="f" * 64)
    n += 1
    print(n, flush=True)
"""


def test_kill_9_during_issuance_leaves_a_consistent_registry(
        authority: Authority, database_url: str, tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    script = _CRASH_DRIVER.format(root=root, ca=str(authority.directory), url=database_url,
                                  tmp=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               text=True, cwd=root)
    assert process.stdout is not None
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 20 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen = int(line)
    os.kill(process.pid, signal.SIGKILL)  # somewhere inside the next issuance
    process.wait(10)
    assert seen >= 20, "the driver did not issue"

    registry = Registry.open(database_url, tmp_path)
    records = registry.all()
    # Everything acknowledged is there; at most the one in flight is extra.
    assert seen <= len(records) <= seen + 1
    assert len({r.serial for r in records}) == len(records)
    for record in records:
        assert x509.Certificate.load(record.der).serial_number == record.serial
    more = registry.issue(_builder(authority), new_serial=random_serial,
                          evidence_id="ev-after-crash", spki_sha256="f" * 64)
    assert more.serial not in {r.serial for r in records}
    registry.close()


def test_one_evidence_one_certificate_even_when_racing(authority: Authority, database_url: str,
                                                       tmp_path: Path) -> None:
    registries = [Registry.open(database_url, tmp_path) for _ in range(4)]

    def worker(registry: Registry) -> str:
        try:
            registry.issue(_builder(authority), new_serial=random_serial,
                           evidence_id="ev-contested", spki_sha256="9" * 64)
            return "issued"
        except EvidenceReused:
            return "reused"

    assert sorted(race(worker, registries)) == ["issued", "reused", "reused", "reused"]
    assert len(registries[0].all()) == 1
    for registry in registries:
        registry.close()
