"""Fixtures shared by the whole suite: real pcscd + vpcd, simulated cards, SoftHSM2.

Each fixture that needs a real part starts it and fails loudly when it cannot.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_sim.attestation import Manufacturer
from firmware_sim.card import InProcessConnection, SimulatedCard, manufacture
from tests.support.pcsc import (
    READER_NAMES,
    PcscUnavailable,
    PrivatePcscd,
    RunningCard,
    free_port_pair,
    wait_reader,
)
from tests.support.postgres import PostgresUnavailable, PrivatePostgres

# libpcsclite reads this when a context is first made: fix it before any test runs.
_PCSC_BASE = Path(tempfile.mkdtemp(prefix="qsign-pcscd-"))
os.environ["PCSCLITE_CSOCK_NAME"] = str(_PCSC_BASE / "run" / "pcscd.comm")

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")


@pytest.fixture(scope="session")
def manufacturer(tmp_path_factory: pytest.TempPathFactory) -> Manufacturer:
    """The simulator's manufacturer root, private to this test session."""
    directory = tmp_path_factory.mktemp("manufacturer")
    os.environ["QSIGN_SIM_MANUFACTURER"] = str(directory)
    return Manufacturer.open(directory)


@pytest.fixture
def card_state(tmp_path: Path, manufacturer: Manufacturer) -> Path:
    """A factory-fresh card state file (default profile)."""
    path = tmp_path / "card.json"
    manufacture(path, manufacturer=manufacturer)
    return path


@pytest.fixture
def sim(card_state: Path) -> SimulatedCard:
    return SimulatedCard.open(card_state)


@pytest.fixture
def connection(sim: SimulatedCard) -> InProcessConnection:
    """An in-process Connection to a powered, fresh simulated card."""
    return InProcessConnection(sim)


@pytest.fixture(scope="session")
def pcscd() -> Iterator[PrivatePcscd]:
    """A private pcscd with two vpcd readers (ports `pcscd.port` and +1)."""
    daemon = PrivatePcscd(_PCSC_BASE, free_port_pair())
    try:
        daemon.start()
    except PcscUnavailable as exc:
        pytest.fail(f"cannot start pcscd with the vpcd driver: {exc}", pytrace=False)
    yield daemon
    gc.collect()  # release leftover pyscard contexts while pcscd still answers
    daemon.stop()


@pytest.fixture
def simulated_card(pcscd: PrivatePcscd, card_state: Path, tmp_path: Path
                   ) -> Iterator[RunningCard]:
    """A fresh simulated card running in `qsign card run`, inserted in the first reader."""
    card = RunningCard(card_state, pcscd.port, READER_NAMES[0], tmp_path / "card.sock")
    try:
        card.start()
    except PcscUnavailable as exc:
        pytest.fail(f"{exc}\npcscd log:\n{pcscd.log_tail()}", pytrace=False)
    yield card
    card.stop()
    # The next test's card must find an empty reader, or pcscd may miss the swap.
    wait_reader(card.reader, "empty")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster on loopback for the whole session."""
    server = PrivatePostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        server.stop()
        pytest.fail(f"cannot start PostgreSQL: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same suite on both registries: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite'}"
    server: PrivatePostgres = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@dataclass
class SoftHsm:
    directory: Path
    conf: Path
    module: Path
    label: str
    pin: str
    so_pin: str


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    """A SoftHSM2 token directory under a temp dir, SOFTHSM2_CONF set, one token made."""
    util = shutil.which("softhsm2-util")
    if util is None or not SOFTHSM_MODULE.exists():
        pytest.fail("SoftHSM2 is not installed (run 'make setup')", pytrace=False)
    tokens = tmp_path / "softhsm-tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    token = SoftHsm(tokens, conf, SOFTHSM_MODULE, "qsign-test", "1234", "123456")
    subprocess.run(
        [util, "--init-token", "--free", "--label", token.label, "--pin", token.pin,
         "--so-pin", token.so_pin],
        check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    return token
