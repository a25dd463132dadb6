"""The portal's deferred PAdES (portal/pades/): per document, prepare and complete at
each level, against pyHanko's one-shot `PdfSigner` with a local key at the same level,
in the same process; then a request's worth of 20 documents (sequential and concurrent).
The CA (OCSP, CRL, TSA) runs as `qsign ca serve` on loopback, in a process of its own.

The token's signature is made between prepare and complete and is not counted: that is
the agent's and the card's time (bench/agent.py). Numbers, not assertions.

    .venv/bin/python bench/portal_pades.py [--runs N] [--pages P] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from asn1crypto import x509  # noqa: E402
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.sign import fields, signers, timestamps  # noqa: E402
from pyhanko_certvalidator import ValidationContext  # noqa: E402
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import (  # noqa: E402
    AIOHttpFetcherBackend,
)
from pyhanko_certvalidator.registry import SimpleCertificateStore  # noqa: E402

from portal import pades  # noqa: E402
from portal.pades import Level  # noqa: E402
from tests.support.pdfs import blank_pdf  # noqa: E402
from tests.support.portal_pki import PortalPki, SoftwareSigner, start_pki  # noqa: E402


async def ours(pki: PortalPki, signer: SoftwareSigner, pdf: bytes, level: Level,
               session: aiohttp.ClientSession, cold: bool = False) -> tuple[float, float]:
    """`cold`: the signer's revocation data is not at hand yet (a request's first
    document); otherwise it is reused, as for the other documents of one request."""
    validation = pki.validation()
    if cold:
        pades.REVOCATIONS.clear()
    t0 = time.perf_counter()
    prepared = await pades.prepare(pdf, signer.certificate, signer.chain, level=level,
                                   field_name="Signature1", signer_name="Alice Martin",
                                   validation=validation, session=session)
    stored = prepared.to_bytes()  # the portal keeps it in its database
    t1 = time.perf_counter()
    value = signer.sign(prepared.signed_attributes)  # the token's part: not counted
    t2 = time.perf_counter()
    await pades.complete(pades.Prepared.from_bytes(stored), value, validation=validation,
                         session=session)
    t3 = time.perf_counter()
    return (t1 - t0) * 1000, (t3 - t2) * 1000


class LoadedKeySigner(signers.Signer):
    """pyHanko's one abstract method over a key already loaded in memory. (SimpleSigner
    re-parses its PKCS#8 key at every signature, dry run included: ~65 ms each for RSA
    2048, which would dwarf what is compared here.)"""

    def __init__(self, software: SoftwareSigner, chain: list[x509.Certificate]) -> None:
        self._software = software
        super().__init__(signing_cert=x509.Certificate.load(software.certificate),
                         cert_registry=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
                             chain))

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        return self._software.sign(data)


async def one_shot(pki: PortalPki, signer: SoftwareSigner, pdf: bytes, level: Level,
                   session: aiohttp.ClientSession) -> float:
    """pyHanko's usual way with the key at hand: PdfSigner.async_sign_pdf, PAdES
    subfilter; B-T with the TSA; B-LT with embed_validation_info and a fetching context."""
    t0 = time.perf_counter()
    chain = [x509.Certificate.load(c) for c in signer.chain]
    simple = LoadedKeySigner(signer, chain)
    backend = AIOHttpFetcherBackend(session=session)
    context = (ValidationContext(trust_roots=[x509.Certificate.load(pki.root)],
                                 other_certs=chain, allow_fetching=True,
                                 revocation_mode="hard-fail", fetcher_backend=backend)
               if level is Level.B_LT else None)
    timestamper = (timestamps.HTTPTimeStamper(f"{pki.base}/tsa", session=session)
                   if level.timestamped else None)
    pdf_signer = signers.PdfSigner(
        signers.PdfSignatureMetadata(
            field_name="Signature1", md_algorithm="sha256", name="Alice Martin",
            subfilter=fields.SigSeedSubFilter.PADES, validation_context=context,
            embed_validation_info=level is Level.B_LT),
        signer=simple, timestamper=timestamper)
    await pdf_signer.async_sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)))
    return (time.perf_counter() - t0) * 1000


async def batch(pki: PortalPki, signer: SoftwareSigner, pdfs: list[bytes], level: Level,
                session: aiohttp.ClientSession, concurrent: bool) -> tuple[float, float]:
    """The sign/prepare and sign/complete of one request with len(pdfs) documents."""
    validation = pki.validation()

    async def prep(pdf: bytes) -> pades.Prepared:
        return await pades.prepare(pdf, signer.certificate, signer.chain, level=level,
                                   field_name="Signature1", signer_name="Alice Martin",
                                   validation=validation, session=session)

    t0 = time.perf_counter()
    if concurrent:
        prepared = list(await asyncio.gather(*(prep(pdf) for pdf in pdfs)))
    else:
        prepared = [await prep(pdf) for pdf in pdfs]
    t1 = time.perf_counter()
    values = [signer.sign(p.signed_attributes) for p in prepared]
    t2 = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(pades.complete(p, v, validation=validation, session=session)
                               for p, v in zip(prepared, values, strict=True)))
    else:
        for p, v in zip(prepared, values, strict=True):
            await pades.complete(p, v, validation=validation, session=session)
    t3 = time.perf_counter()
    return (t1 - t0) * 1000, (t3 - t2) * 1000


async def main(args: argparse.Namespace) -> None:
    pki = start_pki(Path(tempfile.mkdtemp(prefix="qsign-bench-pades-")) / "ca", process=True)
    try:
        async with aiohttp.ClientSession() as session:
            for kind in ("p256", "rsa2048"):
                signer = pki.issue(kind)
                for pages in (1, args.pages):
                    pdf = blank_pdf(pages)
                    print(f"\n{kind}, {pages}-page PDF ({len(pdf) / 1024:.0f} KiB), "
                          f"median of {args.runs}, ms per document")
                    print(f"{'level':6} {'prepare':>8} {'complete':>9} {'total':>7} "
                          f"{'one-shot':>9} {'ratio':>6}")
                    for level, cold in ((Level.B_B, False), (Level.B_T, False),
                                        (Level.B_LT, True), (Level.B_LT, False)):
                        for _ in range(3):  # warm-up: imports, caches, connections
                            await ours(pki, signer, pdf, level, session, cold)
                            await one_shot(pki, signer, pdf, level, session)
                        prep, comp, shot = [], [], []
                        for _ in range(args.runs):  # interleaved: same conditions for both
                            p, c = await ours(pki, signer, pdf, level, session, cold)
                            prep.append(p)
                            comp.append(c)
                            shot.append(await one_shot(pki, signer, pdf, level, session))
                        p, c = statistics.median(prep), statistics.median(comp)
                        s = statistics.median(shot)
                        name = level.value + ("*" if cold else "")
                        print(f"{name:6} {p:8.1f} {c:9.1f} {p + c:7.1f} {s:9.1f} "
                              f"{(p + c) / s:6.2f}")
                    print("B-LT*: the signer's OCSP/CRL fetched and checked (a request's "
                          "first document); B-LT: reused")
            signer = pki.issue("p256")
            pdfs = [blank_pdf(1 + n % 5) for n in range(args.batch)]
            print(f"\none request of {args.batch} documents (1-5 pages), p256, ms in all")
            print(f"{'level':6} {'mode':10} {'prepare':>8} {'complete':>9} {'per doc':>8}")
            for level in Level:
                for concurrent in (False, True):
                    await batch(pki, signer, pdfs, level, session, concurrent)  # warm-up
                    pades.REVOCATIONS.clear()
                    p, c = await batch(pki, signer, pdfs, level, session, concurrent)
                    mode = "concurrent" if concurrent else "sequential"
                    print(f"{level.value:6} {mode:10} {p:8.0f} {c:9.0f} "
                          f"{(p + c) / len(pdfs):8.1f}")
    finally:
        pki.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
