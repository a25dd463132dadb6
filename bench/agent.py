"""The agent end to end: `signatures/signHash` over the WebSocket next to a direct
token call on the same key, and PAdES signing through the agent next to pyHanko's
own PKCS#11 signer on the same SoftHSM2 key, in the same run.

signHash: `credentials/authorize` (OTP, then the PIN; the token signs at once)
followed by `signatures/signHash` under that SAD, for one hash and for a batch of
100 hashes under one SAD, on SoftHSM2 and on the simulated card behind pcscd. The
baseline is `Token.sign_digest` with the PIN on the same key and the same token
object (login/VERIFY before each signature, as the agent does). Each authorisation
gets a fresh TOTP enrolment (re-enrolling replaces the secret), so no run waits on
the 30 s TOTP step. PAdES: 100 one-page PDFs, agent (`TokenSigner` with `sign_pdf`
one at a time, and `sign_pdfs` in batches of 20 as documents/signPdf does) against
`pyhanko.sign.pkcs11.PKCS11Signer` one at a time, all PAdES (ETSI.CAdES.detached).

Targets (issue 4): <= 1 ms added per signature on SoftHSM2; the PDF batch at least
2x pyHanko's sequential rate. Numbers, not assertions.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.support import scratch, simulated_card, softhsm_token

BASE = scratch("agent")

import aiohttp  # noqa: E402
import pyotp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding,
    load_der_public_key,
)
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.sign import signers  # noqa: E402
from pyhanko.sign.fields import SigSeedSubFilter  # noqa: E402
from pyhanko.sign.pkcs11 import PKCS11Signer  # noqa: E402

from agent.app import create_app  # noqa: E402
from agent.config import AgentConfig  # noqa: E402
from agent.pades import sign_pdf, sign_pdfs, token_signer  # noqa: E402
from agent.protocol.gate import GATE  # noqa: E402
from agent.ratelimit import RateLimiter  # noqa: E402
from agent.tokens.model import KeyType, SignatureAlgorithm, Token  # noqa: E402
from agent.tokens.pkcs11 import Pkcs11Module  # noqa: E402
from agent.tokens.registry import TokenRegistry  # noqa: E402
from tests.support import piv_apdus as piv  # noqa: E402
from tests.support.agent_ws import rpc  # noqa: E402
from tests.support.pcsc import connect  # noqa: E402
from tests.support.pdfs import blank_pdf  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.provision import CertIssuer, PyscardConnection, provision  # noqa: E402
from tests.support.second_factor import grant_second_factor  # noqa: E402

PIN = "123456"  # the SoftHSM2 user PIN, and the simulated card's default PIV PIN
ORIGIN = "https://portal.example.test"
ECDSA_SHA256 = SignatureAlgorithm.parse("ECDSA_SHA256")
SINGLE_RUNS = 100  # authorisations of one hash, per route
BATCH_RUNS = 10  # authorisations of 100 hashes, per route
BATCH = 100
PDFS = 100
PDF_BATCH = 20  # documents/signPdf takes at most 20 PDFs


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def softhsm_setup() -> Pkcs11Module:
    """A SoftHSM2 token 'bench' with a P-256 key 01 and a certificate for it."""
    module, token = softhsm_token(BASE, PIN)
    spki = token.generate_key("01", KeyType.EC_P256, pin=PIN)
    public = load_der_public_key(spki)
    cert = CertIssuer().certify(public, "qsign bench softhsm")  # type: ignore[arg-type]
    token.put_certificate("01", cert.public_bytes(Encoding.DER), pin=PIN)
    token.close()
    return module


@contextmanager
def card_setup() -> Iterator[None]:
    """A simulated card behind a private pcscd, its 9C key certified."""
    with simulated_card(BASE) as card:
        connection = connect(card.reader)
        provision(PyscardConnection(connection), 0x9C, piv.ALG_P256, CertIssuer())
        connection.disconnect()
        connection.release()  # now, while pcscd still answers
        yield


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        reply = await rpc(self.ws, method, params, self.next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]


async def agent_round(client: Client, credential: str, hashes: list[bytes]
                      ) -> tuple[float, float]:
    """One fresh enrolment (untimed), then authorize and signHash: their times in ms."""
    enrolment = await client.rpc("otp/enrol", {"credentialID": credential, "PIN": PIN})
    totp: pyotp.TOTP = pyotp.parse_uri(enrolment["uri"])  # type: ignore[assignment]
    encoded = [b64(h) for h in hashes]
    t0 = time.perf_counter_ns()
    sad = (await client.rpc("credentials/authorize", {
        "credentialID": credential, "hashes": encoded, "PIN": PIN,
        "OTP": totp.now()}))["SAD"]
    t1 = time.perf_counter_ns()
    signatures = (await client.rpc("signatures/signHash", {
        "credentialID": credential, "SAD": sad, "hashes": encoded}))["signatures"]
    t2 = time.perf_counter_ns()
    assert len(signatures) == len(hashes)
    return (t1 - t0) / 1e6, (t2 - t1) / 1e6


def direct_ms(token: Token, key_id: str, hashes: list[bytes]) -> float:
    t0 = time.perf_counter_ns()
    for digest in hashes:
        token.sign_digest(key_id, digest, ECDSA_SHA256, pin=PIN)
    return (time.perf_counter_ns() - t0) / 1e6


def digests(tag: str, n: int) -> list[bytes]:
    return [hashlib.sha256(f"{tag} {i}".encode()).digest() for i in range(n)]


async def bench_sign_hash(client: Client, registry: TokenRegistry, route: str,
                          token_id: str, key_id: str) -> float:
    credential = f"{token_id}/{key_id}"
    token = await registry.call(token_id, lambda t: t)  # the very object the agent uses
    for i in range(3):  # warm-up, unmeasured
        await agent_round(client, credential, digests(f"{route} warm {i}", 1))
        direct_ms(token, key_id, digests(f"{route} warm {i}", 1))
    added_softhsm = 0.0
    for label, size, runs in (("1 hash", 1, SINGLE_RUNS), (f"{BATCH} hashes", BATCH,
                                                            BATCH_RUNS)):
        auth, sign, base = [], [], []
        for i in range(runs):
            hashes = digests(f"{route} {size} {i}", size)
            a, s = await agent_round(client, credential, hashes)
            auth.append(a)
            sign.append(s)
            base.append(direct_ms(token, key_id, digests(f"{route} direct {size} {i}", size)))
        a, s, d = (statistics.median(x) for x in (auth, sign, base))
        per_sig = (a + s) / size
        direct_per_sig = d / size
        # Added: the median of each run's own difference (agent run i minus the direct
        # run right after it), which a machine's changing load skews less than the
        # difference of two medians.
        added = statistics.median(
            (x + y - z) / size for x, y, z in zip(auth, sign, base, strict=True))
        if route == "softhsm" and size == 1:
            added_softhsm = added
        print(f"{route:<10}{label:<12}{a:>11.3f}{s:>10.3f}{per_sig:>10.3f}"
              f"{direct_per_sig:>9.3f}{added:>9.3f}{per_sig / direct_per_sig:>8.2f}x")
    return added_softhsm


async def bench_pades(registry: TokenRegistry, module: Pkcs11Module, token_id: str
                      ) -> tuple[float, float, float]:
    """PDFs/s: the agent one PDF at a time (`sign_pdf`, as `qsign sign` does), the agent
    in batches of 20 (`sign_pdfs`, as documents/signPdf does), pyHanko's PKCS11Signer."""
    data = blank_pdf(1)  # a one-page PDF, made here: benches run without ../shared
    signer = await token_signer(registry, f"{token_id}/01", PIN)
    for _ in range(3):
        await sign_pdf(signer, data)
    # Before each timed loop: a full collection of the earlier sections' garbage would
    # otherwise land in whichever loop crosses the collector's threshold (40 ms here).
    gc.collect()
    t0 = time.perf_counter()
    ours = [await sign_pdf(signer, data) for _ in range(PDFS)]
    single_rate = PDFS / (time.perf_counter() - t0)
    gc.collect()
    t0 = time.perf_counter()
    batched: list[bytes] = []
    for _ in range(PDFS // PDF_BATCH):
        batched += await sign_pdfs(signer, [data] * PDF_BATCH)
    batch_rate = PDFS / (time.perf_counter() - t0)

    # pyHanko's own signer: its own logged-in session on the same key, after the agent
    # is done with it (PKCS#11 login state is per application).
    session = module.lib.get_token(token_label="bench").open(user_pin=PIN)
    try:
        # SoftHSM2 offers no CKM_ECDSA_SHA256: pyHanko hashes, the token signs (CKM_ECDSA).
        p11 = PKCS11Signer(session, key_id=b"\x01", cert_id=b"\x01",
                           use_raw_mechanism=True)
        # The same kind of signature as the agent's: PAdES (ETSI.CAdES.detached).
        meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256",
                                            subfilter=SigSeedSubFilter.PADES)

        async def theirs_one() -> bytes:
            output = BytesIO()
            await signers.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(data), strict=False),
                                         meta, signer=p11, output=output)
            return output.getvalue()

        for _ in range(3):
            await theirs_one()
        gc.collect()
        t0 = time.perf_counter()
        theirs = [await theirs_one() for _ in range(PDFS)]
        pyhanko_rate = PDFS / (time.perf_counter() - t0)
    finally:
        session.close()
    for signed in (ours[-1], batched[-1], theirs[-1]):  # one signature each, PAdES
        signature = PdfFileReader(BytesIO(signed)).embedded_signatures
        assert len(signature) == 1
        assert signature[0].sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    return single_rate, batch_rate, pyhanko_rate


async def run(module: Pkcs11Module) -> None:
    config = AgentConfig(port=free_port(), state_dir=BASE / "state", pcsc=True,
                         pkcs11_modules=(), allowed_origins=(ORIGIN,),
                         requests_per_minute=1_000_000, max_message_bytes=1024 * 1024)
    registry = TokenRegistry(pcsc=True, pkcs11_modules=[module])
    server = TestServer(create_app(config, registry), host="127.0.0.1", port=config.port)
    await server.start_server()
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            f"http://127.0.0.1:{config.port}/v1/ws",
            headers={"Host": f"127.0.0.1:{config.port}", "Origin": ORIGIN},
            max_msg_size=4 * 1024 * 1024)
        client = Client(ws)
        # Each round enrols a fresh TOTP secret (a new code at once): not what is timed,
        # so the per-origin throttle of PIN-presenting calls is lifted for this run.
        factor = server.app[GATE].second_factor
        assert factor is not None
        factor.limiter = RateLimiter(1_000_000, burst=1_000_000.0)
        deadline = time.monotonic() + 20
        while True:
            tokens = (await client.rpc("tokens/list"))["tokens"]
            soft = [t["id"] for t in tokens if t["id"].startswith("pkcs11:")]
            cards = [t["id"] for t in tokens if not t["id"].startswith("pkcs11:")]
            if soft and cards:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tokens not found: {tokens}")
            await asyncio.sleep(0.2)
        for token_id in (soft[0], cards[0]):  # confirmed as `qsign agent approve` would
            await grant_second_factor(ws, token_id, config.state_dir)

        print("qsign bench: agent (medians in ms; per signature = (authorize + signHash) / "
              "hashes)")
        print(f"{'route':<10}{'batch':<12}{'authorize':>11}{'signHash':>10}{'per sig':>10}"
              f"{'direct':>9}{'added':>9}{'ratio':>9}")
        added = await bench_sign_hash(client, registry, "softhsm", soft[0], "01")
        await bench_sign_hash(client, registry, "piv-card", cards[0], "9C")
        await ws.close()

        single_rate, batch_rate, pyhanko_rate = await bench_pades(registry, module, soft[0])
        print()
        print(f"PAdES B-B, {PDFS} one-page PDFs, SoftHSM2 P-256 (PDFs/s; ratio to pyHanko)")
        print(f"{'agent, one at a time (sign_pdf)':<38}{single_rate:>8.1f}"
              f"{single_rate / pyhanko_rate:>8.2f}x")
        print(f"{f'agent, batches of {PDF_BATCH} (sign_pdfs)':<38}{batch_rate:>8.1f}"
              f"{batch_rate / pyhanko_rate:>8.2f}x")
        print(f"{'pyHanko PKCS11Signer, sequential':<38}{pyhanko_rate:>8.1f}{1:>8.2f}x")
        print()
        print(f"target <= 1 ms added per signature on SoftHSM2 (1 hash): {added:.3f} ms "
              f"({'met' if added <= 1 else 'MISSED'})")
        ratio = batch_rate / pyhanko_rate
        print(f"target PDF batch >= 2x pyHanko's sequential rate: {ratio:.2f}x "
              f"({'met' if ratio >= 2 else 'MISSED'})")
    finally:
        await session.close()
        await server.close()


def main() -> int:
    module = softhsm_setup()
    with card_setup():
        asyncio.run(run(module))
    return 0


if __name__ == "__main__":
    sys.exit(main())
