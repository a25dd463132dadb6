"""What every benchmark shares: its scratch directory with the environment pointed
into it, medians, a SoftHSM2 token, a simulated card behind a private pcscd."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.tokens.model import Token
from agent.tokens.pkcs11 import Pkcs11Module
from firmware_sim.card import manufacture
from tests.support.pcsc import READER_NAMES, PrivatePcscd, RunningCard, free_port_pair

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def scratch(name: str) -> Path:
    """A fresh directory for one benchmark, with pcscd's client socket, the simulator's
    manufacturer and SoftHSM2's configuration pointed into it. Call it before pyscard
    or a PKCS#11 module loads: they read the environment once."""
    base = Path(tempfile.mkdtemp(prefix=f"qsign-bench-{name}-"))
    os.environ["PCSCLITE_CSOCK_NAME"] = str(base / "run" / "pcscd.comm")
    os.environ["QSIGN_SIM_MANUFACTURER"] = str(base / "manufacturer")
    os.environ["SOFTHSM2_CONF"] = str(base / "softhsm2.conf")
    return base


def median_ms(fn: Callable[[], object], n: int, warmup: int = 30) -> float:
    """Median wall time of `fn` in ms over `n` runs after `warmup` unmeasured ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e6


@contextmanager
def simulated_card(base: Path) -> Iterator[RunningCard]:
    """A private pcscd (`scratch(...)` pointed PCSCLITE_CSOCK_NAME into `base`) with a
    factory-fresh simulated card in its first reader; both stopped when the block ends."""
    pcscd = PrivatePcscd(base, free_port_pair())
    pcscd.start()
    try:
        manufacture(base / "card.json")
        card = RunningCard(base / "card.json", pcscd.port, READER_NAMES[0],
                           base / "card.sock")
        card.start()
        try:
            yield card
        finally:
            card.stop()
    finally:
        pcscd.stop()


def softhsm_token(base: Path, pin: str, label: str = "bench") -> tuple[Pkcs11Module, Token]:
    """A fresh SoftHSM2 token under `base` (`scratch(...)` pointed SOFTHSM2_CONF there)."""
    (base / "tokens").mkdir()
    (base / "softhsm2.conf").write_text(f"directories.tokendir = {base / 'tokens'}\n")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
                    "--so-pin", "12345678"], check=True, capture_output=True)
    module = Pkcs11Module(SOFTHSM_MODULE)
    slot = next(s for s in module.present_slots() if s.label == label)
    return module, module.open_token(slot.slot_id)
