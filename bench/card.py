"""Simulated card speed through the whole stack: pyscard -> pcscd -> vpcd -> card.

Prints medians for a SELECT round trip, and for ECDSA P-256 and RSA-2048
signatures next to the same signature made directly with `cryptography` in
this run, with the ratio. Targets (issue 2): APDU <= 0.3 ms, P-256 <= 3 ms.
Run with `make bench`; numbers, not assertions.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.support import median_ms, scratch, simulated_card

BASE = scratch("card")

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: E402

from firmware_sim.card import InProcessConnection, SimulatedCard, manufacture  # noqa: E402
from tests.support import piv_apdus as piv  # noqa: E402
from tests.support.pcsc import (  # noqa: E402
    connect,
)
from tests.support.provision import PyscardConnection  # noqa: E402

MESSAGE = b"qsign bench"
DIGEST = hashlib.sha256(MESSAGE).digest()




def card_ops(card: piv.Connection) -> dict[str, Callable[[], object]]:
    piv.expect_ok(card, piv.select())
    assert piv.authenticate_management(card) == piv.SW_OK
    for slot, algorithm in ((0x9A, piv.ALG_P256), (0x9D, piv.ALG_RSA_2048),
                            (0x9C, piv.ALG_P256)):
        piv.expect_ok(card, piv.generate(slot, algorithm))
    verify = piv.verify(piv.DEFAULT_PIN).encode()
    piv.expect_ok(card, verify)
    select = piv.select().encode()
    p256 = piv.sign(0x9A, piv.ALG_P256, DIGEST).encode()
    rsa2048 = piv.sign(0x9D, piv.ALG_RSA_2048, piv.pkcs1_v15_block(MESSAGE)).encode()
    always = piv.sign(0x9C, piv.ALG_P256, DIGEST).encode()

    def pin_always() -> None:  # 9C: VERIFY then the signature, each time
        piv.expect_ok(card, verify)
        piv.expect_ok(card, always)

    return {
        "select": lambda: piv.expect_ok(card, select),
        "p256": lambda: piv.expect_ok(card, p256),
        "rsa2048": lambda: piv.expect_ok(card, rsa2048),
        "verify+p256 (9C)": pin_always,
    }


def main() -> int:
    with simulated_card(BASE) as card:
        connection = connect(card.reader)
        stack = card_ops(PyscardConnection(connection))
        in_process_state = BASE / "card-inproc.json"
        manufacture(in_process_state)
        local = card_ops(InProcessConnection(SimulatedCard.open(in_process_state)))

        ec_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        prehashed = utils.Prehashed(hashes.SHA256())
        direct = {
            "p256": lambda: ec_key.sign(DIGEST, ec.ECDSA(prehashed)),
            "rsa2048": lambda: rsa_key.sign(DIGEST, padding.PKCS1v15(), prehashed),
        }
        # SELECT last: selecting PIV again forgets the verified PIN (SECURITY #36).
        counts = {"p256": 1000, "rsa2048": 300, "verify+p256 (9C)": 100, "select": 3000}

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
