"""The validation service (validation/): validations per second of one PDF signed here at
B-LT and at B-LTA, offline (the files' DSS only), under the CA's demo trusted list,
against a baseline in the same run: pyHanko's plain `async_validate_pdf_signature` with
the same trust roots and the DSS's revocation data (integrity, chain, revocation and the
timestamp, without EN 319 102-1's long-term steps, the trusted list's qualification, the
difference analysis report or the TS 119 102-2 report). The CA (TSA, OCSP) serves the
signing only, and is stopped before anything is measured. Numbers, not assertions.

    .venv/bin/python bench/validation.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from functools import partial
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.sign.validation import async_validate_pdf_signature  # noqa: E402
from pyhanko.sign.validation.dss import DocumentSecurityStore  # noqa: E402

from bench.support import median_ms  # noqa: E402
from tests.support.pdfs import blank_pdf  # noqa: E402
from tests.support.portal_pki import start_pki  # noqa: E402
from tests.support.validation_pki import demo_lists, sign  # noqa: E402
from validation import ValidationSettings, validate_pdf  # noqa: E402


def baseline(pdf: bytes, settings: ValidationSettings) -> str:
    """pyHanko's one call per signature, its context from the file's DSS."""
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    context = DocumentSecurityStore.read_dss(reader).as_validation_context({
        "trust_roots": list(settings.trust_anchors), "allow_fetching": False,
        "revocation_mode": "hard-fail"})
    [signature] = [s for s in reader.embedded_signatures
                   if s.sig_object_type != "/DocTimeStamp"]
    status = asyncio.run(async_validate_pdf_signature(
        signature, signer_validation_context=context, ts_validation_context=context))
    return "valid, trusted" if status.bottom_line else "not valid"


def ours(pdf: bytes, settings: ValidationSettings) -> str:
    [signature] = validate_pdf(pdf, settings).signatures
    return f"{signature.indication}, {signature.qualification}"


def main(args: argparse.Namespace) -> None:
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    base = Path(tempfile.mkdtemp(prefix="qsign-bench-validation-"))
    pki = start_pki(base / "ca", process=True)
    try:
        lists = demo_lists(pki, base / "lists", withdrawn_at=pki.authority.now())
        signer = pki.issue("p256", "Martin")
        files = {level: sign(pki, blank_pdf(), signer, level) for level in ("B-LT", "B-LTA")}
    finally:
        pki.stop()  # offline from here on
    settings = ValidationSettings.load([str(lists.granted)], operator_certs=[lists.operator])
    print(f"validations per second, one p256 signature, offline, {args.runs} runs "
          "(median time)")
    print(f"{'level':6} {'validator':28} {'ms':>7} {'per s':>7}  result")
    for level, pdf in files.items():
        for name, validate in (("validation.validate_pdf", ours),
                               ("pyHanko (baseline)", baseline)):
            result = validate(pdf, settings)
            ms = median_ms(partial(validate, pdf, settings), args.runs,
                           warmup=min(3, args.runs))
            print(f"{level:6} {name:28} {ms:7.1f} {1000 / ms:7.1f}  {result}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    main(parser.parse_args())
