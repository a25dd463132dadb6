"""Simulated card speed through the whole stack: pyscard -> pcscd -> vpcd -> card.

Prints medians for a SELECT round trip, and for ECDSA P-256 and RSA-2048
signatures next to the same signature made directly with `cryptography` in
this run, with the ratio. Targets (issue 2): APDU <= 0.3 ms, P-256 <= 3 ms.
Run with `make bench`; numbers, not assertions.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BASE = Path(tempfile.mkdtemp(prefix="qsign-bench-"))
os.environ["PCSCLITE_CSOCK_NAME"] = str(BASE / "run" / "pcscd.comm")  # before pyscard loads
os.environ["QSIGN_SIM_MANUFACTURER"] = str(BASE / "manufacturer")

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: E402

from firmware_sim.card import InProcessConnection, SimulatedCard, manufacture  # noqa: E402
from qsign.iso7816 import tlv  # noqa: E402
from tests.support.pcsc import (  # noqa: E402
    READER_NAMES,
    PrivatePcscd,
    RunningCard,
    connect,
    free_port_pair,
)
from tests.support.provision import (  # noqa: E402
    ALG_P256,
    ALG_RSA2048,
    PIV_AID,
    Transmit,
    apdu,
    authenticate_management,
    check,
    following_responses,
    generate,
    pyscard_transmit,
    select,
)

DIGEST = hashlib.sha256(b"qsign bench").digest()
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def median_ms(fn: Callable[[], object], n: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e6


def pkcs1_block(digest: bytes, k: int = 256) -> bytes:
    payload = SHA256_DIGEST_INFO + digest
    return b"\x00\x01" + b"\xff" * (k - 3 - len(payload)) + b"\x00" + payload


def card_ops(transmit: Transmit) -> dict[str, Callable[[], object]]:
    select(transmit)
    authenticate_management(transmit)
    generate(transmit, 0x9A, ALG_P256)
    generate(transmit, 0x9D, ALG_RSA2048)
    generate(transmit, 0x9C, ALG_P256)
    check(transmit, apdu(0, 0x20, 0, 0x80, b"123456\xff\xff"), "VERIFY")
    select_apdu = apdu(0, 0xA4, 4, 0, PIV_AID, 0)
    p256 = apdu(0, 0x87, ALG_P256, 0x9A, tlv(0x7C, tlv(0x82) + tlv(0x81, DIGEST)), 0)
    rsa2048 = apdu(0, 0x87, ALG_RSA2048, 0x9D,
                   tlv(0x7C, tlv(0x82) + tlv(0x81, pkcs1_block(DIGEST))), 0)
    verify = apdu(0, 0x20, 0, 0x80, b"123456\xff\xff")
    always = apdu(0, 0x87, ALG_P256, 0x9C, tlv(0x7C, tlv(0x82) + tlv(0x81, DIGEST)), 0)

    def pin_always() -> None:  # 9C: VERIFY then the signature, each time
        check(transmit, verify, "VERIFY")
        check(transmit, always, "9C signature")

    return {
        "select": lambda: check(transmit, select_apdu, "SELECT"),
        "p256": lambda: check(transmit, p256, "P-256 signature"),
        "rsa2048": lambda: check(transmit, rsa2048, "RSA-2048 signature"),
        "verify+p256 (9C)": pin_always,
    }


def main() -> int:
    pcscd = PrivatePcscd(BASE, free_port_pair())
    pcscd.start()
    state = BASE / "card.json"
    manufacture(state)
    card = RunningCard(state, pcscd.port, READER_NAMES[0], BASE / "card.sock")
    card.start()
    try:
        connection = connect(card.reader)
        stack = card_ops(pyscard_transmit(connection))
        in_process_state = BASE / "card-inproc.json"
        manufacture(in_process_state)
        local = card_ops(following_responses(
            InProcessConnection(SimulatedCard.open(in_process_state)).transmit))

        ec_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        prehashed = utils.Prehashed(hashes.SHA256())
        direct = {
            "p256": lambda: ec_key.sign(DIGEST, ec.ECDSA(prehashed)),
            "rsa2048": lambda: rsa_key.sign(DIGEST, padding.PKCS1v15(), prehashed),
        }
        counts = {"select": 3000, "p256": 1000, "rsa2048": 300, "verify+p256 (9C)": 100}

        print("qsign bench: simulated card (medians, ms)")
        print(f"{'operation':<20}{'full stack':>12}{'in-process':>12}{'direct':>10}"
              f"{'stack/direct':>14}")
        results: dict[str, float] = {}
        for name, n in counts.items():
            full = median_ms(stack[name], n)
            inproc = median_ms(local[name], n)
            results[name] = full
            if name in direct:
                base = median_ms(direct[name], n)
                print(f"{name:<20}{full:>12.3f}{inproc:>12.3f}{base:>10.3f}{full / base:>13.1f}x")
            else:
                print(f"{name:<20}{full:>12.3f}{inproc:>12.3f}{'-':>10}{'-':>14}")
        connection.disconnect()
        connection.release()
        print()
        print(f"target APDU round trip <= 0.3 ms: {results['select']:.3f} ms "
              f"({'met' if results['select'] <= 0.3 else 'MISSED'})")
        print(f"target P-256 signature <= 3 ms:   {results['p256']:.3f} ms "
              f"({'met' if results['p256'] <= 3 else 'MISSED'})")
    finally:
        card.stop()
        pcscd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
