"""Token layer overhead: a digest signature through `agent.tokens`, per route,
next to a direct baseline in the same run, and throughput with 8 callers.

Routes: SoftHSM2 (baseline: python-pkcs11 alone on the same key, its r||s
DER-encoded as the layer's answer is) and the
simulated card over pcscd (baseline: the same GENERAL AUTHENTICATE sent with
pyscard and no layer). Target (issue 3): the layer adds <= 10% to a SoftHSM2
P-256 signature. Numbers, not assertions; run with `make bench`.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.support import (
    SOFTHSM_MODULE,
    median_ms,
    scratch,
    simulated_card,
    softhsm_token,
)

BASE = scratch("tokens")

import pkcs11  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402
from pkcs11 import KeyType as P11KeyType  # noqa: E402
from pkcs11 import Mechanism, ObjectClass  # noqa: E402

from agent.tokens.model import KeyType, SignatureAlgorithm, Token  # noqa: E402
from agent.tokens.pcsc import PcscConnection, PcscContext  # noqa: E402
from agent.tokens.piv import PivToken  # noqa: E402
from agent.tokens.worker import TokenWorker  # noqa: E402
from tests.support import piv_apdus as piv  # noqa: E402
from tests.support.pcsc import connect  # noqa: E402
from tests.support.provision import PyscardConnection  # noqa: E402

DIGEST = hashlib.sha256(b"qsign token bench").digest()
ECDSA_SHA256 = SignatureAlgorithm.parse("ECDSA_SHA256")
PIN = "1234"




def throughput(call: Callable[[], Awaitable[object]], callers: int, total: int) -> float:
    """Signatures per second with `callers` concurrent callers queueing on one worker."""

    async def main() -> float:
        per_caller = total // callers

        async def caller() -> None:
            for _ in range(per_caller):
                await call()

        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return per_caller * callers / (time.perf_counter() - t0)

    return asyncio.run(main())


def softhsm_setup() -> tuple[Token, Callable[[], object]]:
    _, token = softhsm_token(BASE, PIN)
    token.generate_key("01", KeyType.EC_P256, pin=PIN)
    # Baseline: python-pkcs11 alone, its own logged-in session, key looked up once.
    # Login state is per application in PKCS#11: its login serves the token's session too
    # (the token itself logs out after every PIN it is given).
    session = pkcs11.lib(SOFTHSM_MODULE).get_token(token_label="bench").open(user_pin=PIN)
    key = session.get_key(ObjectClass.PRIVATE_KEY, P11KeyType.EC, id=b"\x01")

    def direct() -> bytes:  # the same output as the layer's: a DER Ecdsa-Sig-Value
        raw = key.sign(DIGEST, mechanism=Mechanism.ECDSA)
        return encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                    int.from_bytes(raw[32:], "big"))

    return token, direct


@contextmanager
def card_setup() -> Iterator[tuple[Token, Callable[[], object]]]:
    with simulated_card(BASE) as card:
        token = PivToken(PcscConnection(PcscContext(), card.reader), reader=card.reader)
        token.generate_key("9A", KeyType.EC_P256)
        connection = connect(card.reader)
        raw = PyscardConnection(connection)
        # The bench's own client unlocks the card (the token locks it after every PIN).
        piv.expect_ok(raw, piv.verify(piv.DEFAULT_PIN))
        command = piv.sign(0x9A, piv.ALG_P256, DIGEST).encode()
        try:
            yield token, lambda: piv.expect_ok(raw, command)
        finally:  # before pcscd stops, or pyscard complains as it collects the connection
            connection.disconnect()
            connection.release()
            token.close()


def main() -> int:
    print("qsign bench: token layer (medians in ms; throughput in signatures/s)")
    print(f"{'route':<10}{'direct':>9}{'Token':>9}{'+worker':>9}{'layer/direct':>14}"
          f"{'8 callers':>11}")
    soft_token, soft_direct = softhsm_setup()
    with card_setup() as (card_token, card_direct):
        for name, token, direct, slot, n in (
            ("softhsm", soft_token, soft_direct, "01", 2000),
            ("piv-card", card_token, card_direct, "9A", 1000),
        ):
            def via_token(token: Token = token, slot: str = slot) -> object:
                return token.sign_digest(slot, DIGEST, ECDSA_SHA256)

            worker = TokenWorker(name)

            async def via_worker(fn: Callable[[], object] = via_token,
                                 w: TokenWorker = worker) -> object:
                return await w.run(fn)

            base = median_ms(direct, n)
            layered = median_ms(via_token, n)
            loop = asyncio.new_event_loop()
            hop = median_ms(lambda f=via_worker, lp=loop: lp.run_until_complete(f()), n)
            loop.close()
            rate = throughput(via_worker, 8, n)
            worker.shutdown()
            print(f"{name:<10}{base:>9.3f}{layered:>9.3f}{hop:>9.3f}"
                  f"{layered / base:>13.2f}x{rate:>11.0f}")
        print()
        print("target: layer <= 1.10x direct on SoftHSM2 P-256 ('layer/direct' column)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
