"""The portal's validation service over a real socket (issue 16; portal/API.md
"Validation"): one portal for the module, served on loopback from its own event loop,
with the CA's demo trusted list (ca/trusted_list.py, signed by its scheme operator) and a
seal key certified by that CA (ca/seal.py, portal/seal.py), the CA served too (OCSP,
time-stamps: the reports are sealed B-LT).

What an anonymous caller gets: the report of a PDF (none, or the portal's own sealed
report, validated back), the XML and sealed-PDF forms, and the typed refusals: not a PDF,
an empty body, a malformed PDF, an unsupported type, too large (announced or streamed),
too many from one address."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from portal.config import PortalConfig
from portal.service import create_app
from portal.store import Store
from qsign.validation_setup import demo_trusted_list, seal_from_ca
from tests.support.pdfs import blank_pdf
from tests.support.portal_pki import start_pki
from tests.support.portal_service import Clock
from tests.support.ports import free_port
from tests.support.threaded_app import serve_in_thread

MAX_BYTES = 400_000
PER_HOUR = 6
SEAL_NAME = "qsign Validation Service (test)"


@dataclass
class Served:
    url: str
    clock: Clock
    token: str

    def fresh_window(self) -> None:
        """The next requests start a new hourly allowance for this address."""
        self.clock.advance(hours=2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("validations")
    pki = start_pki(root / "ca")  # served: OCSP and time-stamps for the seal's B-LT
    try:
        listed = demo_trusted_list(pki.directory, root)
        seal_from_ca(pki.directory, None, root / "portal", SEAL_NAME)
        port = free_port()
        config = PortalConfig.from_mapping({
            "portal": {"state_dir": str(root / "portal"), "port": port,
                       "max_document_bytes": MAX_BYTES, "timestamp_url": pki.base + "/tsa",
                       "trust_roots": [str(pki.directory / "certs" / "root.pem")]},
            "validation": {"trusted_lists": list(listed.trusted_lists),
                           "operator_certs": [str(p) for p in listed.operator_certs],
                           "per_address_per_hour": PER_HOUR}})
        clock = Clock()
        portal = serve_in_thread(
            create_app(config, store=Store.open(None, config.state_dir, clock)), port,
            "test-portal")
        try:
            yield Served(f"http://127.0.0.1:{port}", clock,
                         (config.state_dir / "requester.token").read_text().strip())
        finally:
            portal.stop()
    finally:
        pki.stop()


async def _post(served: Served, body: Any, *, content_type: str = "application/pdf",
                accept: str = "application/json", query: str = "?name=contract.pdf"
                ) -> tuple[int, Any, str]:
    headers = {"Content-Type": content_type, "Accept": accept}
    async with aiohttp.ClientSession() as session, session.post(
            f"{served.url}/api/v1/validations{query}", data=body,
            headers=headers) as response:
        data = await (response.json() if response.content_type == "application/json"
                      else response.read())
        return response.status, data, response.content_type


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_an_unsigned_pdf_has_no_signature(served: Served) -> None:
    served.fresh_window()
    status, report, _ = _run(_post(served, blank_pdf()))
    assert status == 200, report
    assert report["file"] == "contract.pdf" and report["signatures"] == []
    assert report["note"] == "no signature"
    [tl] = report["trustedLists"]
    assert tl["ok"] is True, tl


def test_a_form_upload_is_read_from_its_file_part(served: Served) -> None:
    served.fresh_window()

    def form(field: str) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field(field, blank_pdf(), filename="form.pdf",
                       content_type="application/pdf")
        return data

    async def post(field: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(
                f"{served.url}/api/v1/validations", data=form(field)) as response:
            return response.status, await response.json()

    status, report = _run(post("file"))
    assert status == 200 and report["file"] == "form.pdf", report
    status, reply = _run(post("document"))
    assert (status, reply["error"]) == (400, "BAD_REQUEST"), reply


def test_the_sealed_pdf_report_validates_and_names_the_service(served: Served) -> None:
    served.fresh_window()
    status, sealed, kind = _run(_post(served, blank_pdf(), accept="application/pdf"))
    assert status == 200 and kind == "application/pdf" and sealed.startswith(b"%PDF-")
    # The report comes back in the requester API's JSON document shape.
    status, report, _ = _run(_post(served, aiohttp.JsonPayload({
        "name": "report.pdf", "content": base64.b64encode(sealed).decode()}),
        content_type="application/json", query=""))
    assert status == 200, report
    [seal] = report["signatures"]
    assert seal["field"] == "ServiceSeal" and SEAL_NAME in seal["signer"], seal
    # B-LT: the seal's revocation data is in the report, which validates offline.
    assert (seal["indication"], seal["level"]) == ("TOTAL-PASSED", "B-LT"), seal
    # A byte changed inside the signed range: the seal no longer holds.
    at = sealed.index(b"Signature validation report") if b"Signature validation report" \
        in sealed else len(sealed) // 3
    tampered = sealed[:at] + bytes([sealed[at] ^ 0x01]) + sealed[at + 1:]
    status, report, _ = _run(_post(served, tampered))
    assert status == 200, report
    assert report["signatures"][0]["indication"] == "TOTAL-FAILED", report


def test_the_xml_report_follows_ts_119_102_2(served: Served) -> None:
    served.fresh_window()
    status, xml, kind = _run(_post(served, blank_pdf(), accept="application/xml"))
    assert status == 200 and kind == "application/xml"
    assert b"ValidationReport" in xml[:2000], xml[:300]


def test_typed_refusals(served: Served) -> None:
    served.fresh_window()
    cases = [(b"", "application/pdf", 422, "NOT_A_PDF"),
             (b"hello, not a PDF", "application/pdf", 422, "NOT_A_PDF"),
             (b"%PDF-1.7\nthis is no PDF body at all\n%%EOF\n", "application/pdf", 422,
              "PDF_INVALID"),
             (blank_pdf(), "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE")]
    for body, content_type, status, code in cases:
        got, reply, _ = _run(_post(served, body, content_type=content_type))
        assert (got, reply["error"]) == (status, code), (body[:20], reply)


def test_too_large_announced_or_streamed(served: Served) -> None:
    served.fresh_window()
    big = b"%PDF-1.7\n" + b"0" * MAX_BYTES
    status, reply, _ = _run(_post(served, big))
    assert (status, reply["error"]) == (413, "PAYLOAD_TOO_LARGE"), reply

    async def trickle() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse by
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"0" * 65536

    status, reply, _ = _run(_post(served, trickle()))
    assert (status, reply["error"]) == (413, "PAYLOAD_TOO_LARGE"), reply


def test_one_address_is_rate_limited_per_hour(served: Served) -> None:
    served.fresh_window()
    for _ in range(PER_HOUR):
        status, reply, _ = _run(_post(served, b""))
        assert reply["error"] == "NOT_A_PDF", reply
    status, reply, _ = _run(_post(served, blank_pdf()))
    assert (status, reply["error"]) == (429, "RATE_LIMITED"), reply
    assert 0 < reply["retryAfter"] <= 3600
    served.fresh_window()
    status, reply, _ = _run(_post(served, blank_pdf()))
    assert status == 200, reply


def test_the_requester_reads_the_report_of_a_document(served: Served) -> None:
    async def main() -> None:
        auth = {"Authorization": f"Bearer {served.token}"}
        async with aiohttp.ClientSession(headers=auth) as session:
            async with session.post(f"{served.url}/api/v1/transactions", json={
                    "title": "Lease", "level": "B-B",
                    "requester": {"name": "R", "email": "r@example.test"},
                    "documents": [{"name": "lease.pdf",
                                   "content": base64.b64encode(blank_pdf()).decode()}],
                    "signers": [{"name": "Alice Martin", "email": "a@example.test",
                                 "phone": "+33612345678"}]}) as response:
                tx = await response.json()
                assert response.status == 201, tx
            path = (f"/api/v1/transactions/{tx['id']}/documents/"
                    f"{tx['documents'][0]['id']}/validation")
            async with session.get(served.url + path) as response:
                report = await response.json()
                assert response.status == 200, report
            assert report["file"] == "lease.pdf" and report["signatures"] == []
            async with aiohttp.ClientSession() as anonymous, anonymous.get(
                    served.url + path) as response:
                assert response.status == 401

    asyncio.run(main())


async def _post_from(served: Served, address: str, body: bytes, *, timeout: float = 30.0,
                     accept: str = "application/json") -> tuple[int, Any]:
    """POST from the loopback `address` (127.x.y.z): another client address."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
            f"{served.url}/api/v1/validations?name=probe.pdf", data=body,
            headers={"Content-Type": "application/pdf", "Accept": accept},
            timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.read()


async def _get_kept(served: Served, sha256: str, accept: str, address: str = "127.0.0.1"
                    ) -> tuple[int, Any, str]:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session, session.get(
            f"{served.url}/api/v1/validations/{sha256}", headers={"Accept": accept}
            ) as response:
        data = await (response.json() if response.content_type == "application/json"
                      else response.read())
        return response.status, data, response.content_type


def test_the_report_is_fetched_again_by_sha256_without_counting(served: Served) -> None:
    """The page's XML and PDF buttons: the same address reads its report again by the
    file's SHA-256, in every form, without sending or counting the file; another
    address cannot."""
    served.fresh_window()
    status, report, _ = _run(_post(served, blank_pdf()))
    assert status == 200, report
    sha256 = report["sha256"]
    for _ in range(PER_HOUR):  # more reads than the hourly allowance of uploads
        status, xml, kind = _run(_get_kept(served, sha256, "application/xml"))
        assert (status, kind) == (200, "application/xml") and b"ValidationReport" in xml
    status, sealed, kind = _run(_get_kept(served, sha256, "application/pdf"))
    assert (status, kind) == (200, "application/pdf") and sealed.startswith(b"%PDF-")
    status, again, _ = _run(_get_kept(served, sha256.upper(), "application/json"))
    assert status == 200 and again == report
    for _ in range(PER_HOUR - 1):  # the reads were not counted: uploads are still allowed
        status, reply, _ = _run(_post(served, blank_pdf()))
        assert status == 200, reply
    status, reply, _ = _run(_get_kept(served, sha256, "application/xml", "127.0.0.2"))
    assert (status, reply["error"]) == (404, "NOT_FOUND"), reply
    status, reply, _ = _run(_get_kept(served, "0" * 64, "application/xml"))
    assert (status, reply["error"]) == (404, "NOT_FOUND"), reply
    served.clock.advance(minutes=6)  # a report is kept five minutes
    status, reply, _ = _run(_get_kept(served, sha256, "application/json"))
    assert (status, reply["error"]) == (404, "NOT_FOUND"), reply


def test_a_ninth_upload_at_once_is_refused(served: Served) -> None:
    """8 slow uploads held open from 8 addresses (real sockets, half a body sent): a 9th
    is refused at once with UNAVAILABLE and retryAfter, not kept waiting; once the slow
    clients go away, uploads are taken again."""
    served.fresh_window()
    host, port = served.url.removeprefix("http://").split(":")

    async def main() -> None:
        held = []
        for n in range(2, 10):
            reader, writer = await asyncio.open_connection(
                host, int(port), local_addr=(f"127.0.0.{n}", 0))
            writer.write(b"POST /api/v1/validations?name=slow.pdf HTTP/1.1\r\n"
                         b"Host: portal\r\nContent-Type: application/pdf\r\n"
                         b"Content-Length: 100000\r\n\r\n%PDF-1.7\n" + b"0" * 1000)
            await writer.drain()
            held.append((reader, writer))
        try:
            refusal = await _probe_until(served, lambda status: status == 503)
            assert refusal["error"] == "UNAVAILABLE" and refusal["retryAfter"] > 0, refusal
        finally:
            for _, writer in held:
                writer.close()
        await _probe_until(served, lambda status: status == 200)

    asyncio.run(main())


async def _probe_until(served: Served, done: Any, deadline_s: float = 60.0) -> Any:
    """Small uploads from fresh addresses (each counted once) until `done(status)`; a
    probe left waiting is not an answer. Fails after `deadline_s`."""
    loop = asyncio.get_running_loop()
    start, n = loop.time(), 0
    while loop.time() - start < deadline_s:
        n += 1
        try:
            status, reply = await _post_from(served, f"127.0.1.{n % 250 + 1}", blank_pdf(),
                                             timeout=5.0)
        except TimeoutError:
            continue
        if done(status):
            return reply
    pytest.fail(f"no such answer within {deadline_s} s")
