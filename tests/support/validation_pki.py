"""What the validator's tests sign and trust: PAdES signatures made by the portal's own
stack (portal/pades with our CA's TSA and OCSP on loopback, tests/support/portal_pki.py),
B-LTA by a document timestamp from the same TSA, and the CA's demo trusted lists."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from asn1crypto import cms
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.signers import PdfTimeStamper
from pyhanko.sign.timestamps import HTTPTimeStamper

from ca.trusted_list import SchemeOperator, list_of_lists, trusted_list
from ca.tsa import TimestampAuthority, request_for_digest, token_from_response
from portal import pades
from portal.pades import Level
from tests.support.portal_pki import PortalPki, SoftwareSigner


def sign(pki: PortalPki, pdf: bytes, signer: SoftwareSigner, level: str,
         field: str = "Signature1") -> bytes:
    """`level` B-B, B-T, B-LT (the portal's levels) or B-LTA (B-LT, then a document
    timestamp, EN 319 142-1 §5.5)."""
    return asyncio.run(_sign(pki, pdf, signer, level, field))


def restamped(pdf: bytes, tsa: TimestampAuthority) -> bytes:
    """The signature's timestamp token replaced by one from `tsa` over the same signature
    value (RFC 3161 §2.4.2 imprint), in the same /Contents."""
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    [signature] = reader.embedded_signatures
    first, length, after, _ = (int(x) for x in signature.sig_object["/ByteRange"])
    start, end = first + length + 1, after - 1  # the hex digits between < and >
    info = cms.ContentInfo.load(bytes.fromhex(pdf[start:end].decode()))
    signer = info["content"]["signer_infos"][0]
    request = request_for_digest(hashlib.sha256(signer["signature"].native).digest())
    token = token_from_response(tsa.respond(request), request)
    for attribute in signer["unsigned_attrs"]:
        if attribute["type"].native == "signature_time_stamp_token":
            attribute["values"] = [token]
    contents = info.dump().hex().encode()
    assert len(contents) <= end - start, "the new token does not fit /Contents"
    return pdf[:start] + contents.ljust(end - start, b"0") + pdf[end:]


def page_changed(pdf: bytes) -> bytes:
    """An incremental update that changes the first page's MediaBox: a change no
    signature allows (ISO 32000-2 §12.8.2.2: not form filling, not an annotation)."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    page = writer.root["/Pages"]["/Kids"][0]
    page.get_object()["/MediaBox"] = generic.ArrayObject(
        [generic.NumberObject(n) for n in (0, 0, 300, 300)])
    writer.update_container(page.get_object())
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


async def _sign(pki: PortalPki, pdf: bytes, signer: SoftwareSigner, level: str,
                field: str) -> bytes:
    validation = pki.validation()
    portal_level = Level.B_LT if level == "B-LTA" else Level(level)
    prepared = await pades.prepare(pdf, signer.certificate, signer.chain, level=portal_level,
                                   field_name=field, signer_name="Alice Martin",
                                   validation=validation)
    signed = await pades.complete(prepared, signer.sign(prepared.signed_attributes),
                                  validation=validation)
    if level != "B-LTA":
        return signed
    out = BytesIO()
    await PdfTimeStamper(HTTPTimeStamper(f"{pki.base}/tsa")).async_timestamp_pdf(
        IncrementalPdfFileWriter(BytesIO(signed)), "sha256", output=out)
    return out.getvalue()


@dataclass(frozen=True)
class DemoLists:
    """The CA's trusted lists in files: granted, withdrawn at `withdrawn_at`, with
    qualifiers overriding its certificates, a list of trusted lists pointing at the
    granted one, and the scheme operator's certificate."""

    granted: Path
    withdrawn: Path
    no_qscd: Path  # qualifier QCNoQSCD on the CA/QC service
    not_qualified: Path  # qualifier NotQualified
    lotl: Path
    operator: Path
    withdrawn_at: dt.datetime


def demo_lists(pki: PortalPki, directory: Path, withdrawn_at: dt.datetime) -> DemoLists:
    directory.mkdir(parents=True, exist_ok=True)
    granted, withdrawn = directory / "tl.xml", directory / "tl-withdrawn.xml"
    granted.write_bytes(trusted_list(pki.authority, location=granted.as_uri()))
    withdrawn.write_bytes(trusted_list(pki.authority, location=withdrawn.as_uri(),
                                       granted_since=withdrawn_at - dt.timedelta(days=1),
                                       withdrawn_at=withdrawn_at))
    qualified = {}
    for qualifier in ("QCNoQSCD", "NotQualified"):
        qualified[qualifier] = directory / f"tl-{qualifier}.xml"
        qualified[qualifier].write_bytes(trusted_list(pki.authority, qualifiers=[qualifier]))
    operator = directory / "operator.pem"
    operator.write_bytes(SchemeOperator.of(pki.authority).pem)
    lotl = directory / "lotl.xml"
    lotl.write_bytes(list_of_lists(pki.authority, [(granted.as_uri(), "FR",
                                                    operator.read_bytes())]))
    return DemoLists(granted, withdrawn, qualified["QCNoQSCD"], qualified["NotQualified"],
                     lotl, operator, withdrawn_at)
