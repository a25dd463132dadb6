"""What every benchmark shares."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agent.tokens.model import Token
from agent.tokens.pkcs11 import Pkcs11Module
from firmware_sim.card import manufacture
from tests.support.pcsc import READER_NAMES, PrivatePcscd, RunningCard, free_port_pair

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


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


def start_card(base: Path) -> tuple[RunningCard, PrivatePcscd]:
    """A private pcscd (PCSCLITE_CSOCK_NAME must already point into `base`) with a
    factory-fresh simulated card in its first reader."""
    pcscd = PrivatePcscd(base, free_port_pair())
    pcscd.start()
    manufacture(base / "card.json")
    card = RunningCard(base / "card.json", pcscd.port, READER_NAMES[0], base / "card.sock")
    card.start()
    return card, pcscd


def softhsm_token(base: Path, pin: str, label: str = "bench") -> tuple[Pkcs11Module, Token]:
    """A fresh SoftHSM2 token under `base` (SOFTHSM2_CONF must point at base/softhsm2.conf)."""
    (base / "tokens").mkdir()
    (base / "softhsm2.conf").write_text(f"directories.tokendir = {base / 'tokens'}\n")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
                    "--so-pin", "12345678"], check=True, capture_output=True)
    module = Pkcs11Module(SOFTHSM_MODULE)
    slot = next(s for s in module.present_slots() if s.label == label)
    return module, module.open_token(slot.slot_id)
