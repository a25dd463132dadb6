"""A sequential two-signer transaction at B-LTA with every real part (the CA with its
TSA, the simulated card in pcscd, the agent, the portal, an SMTP server and a webhook
receiver on loopback): the second signer's invitation reaches the mailbox only after the
first signed; every event reaches the receiver with a valid HMAC; the signed PDF carries
both signatures (the first visible where the requester placed it), the DSS and document
time-stamps that validate offline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)

from portal.webhooks import SIGNATURE_HEADER, verify
from tests.integration.test_portal_webhooks import WS
from tests.support.pcsc import RunningCard
from tests.support.signing_stack import OnStack, Stack, with_stack
from tests.support.smtp_sink import SmtpSink, smtp_sink
from tests.support.waiting import wait_until_async
from tests.support.webhook_receiver import EVENTS, Receiver, receiving


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as running:
        yield running


def test_the_second_signer_is_invited_after_the_first_signed(
        simulated_card: RunningCard, tmp_path: Path, sink: SmtpSink) -> None:
    mails = sink
    receiver = Receiver(failures=0)

    async def scenario(stack: Stack, url: str) -> None:
        portal = stack.portal
        hook = await portal.call("POST", WS + "/webhooks", {"url": url, "events": EVENTS},
                                 auth=True, expect=201)
        tx = await portal.create(signers=[
            {"name": "Alice Martin", "email": "s1@example.test", "phone": "+33612345670",
             "appearance": {"page": 1, "rect": [50, 700, 250, 760]}},
            {"name": "Bob Durand", "email": "s2@example.test", "phone": "+33612345671",
             "lang": "fr"}], documents=1, level="B-LTA", signingOrder="sequential")
        assert [s["status"] for s in tx["signers"]] == ["invited", "waiting"]
        await wait_until_async(lambda: mails.to("s1@example.test"), "the first invitation")
        assert not [m for m in portal.store.mails() if m.to == "s2@example.test"]
        await stack.sign(await stack.ready_to_sign(tx, 0))
        [second] = await wait_until_async(lambda: mails.to("s2@example.test"),
                                          "the second invitation")
        after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        body = second.get_payload(decode=True)
        assert isinstance(body, bytes) and after["signers"][1]["inviteUrl"] in body.decode()
        await stack.reprovision("Bob", "Durand")  # the second signer's own card
        await stack.sign(await stack.ready_to_sign(after, 1))
        done = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
        assert done["status"] == "completed"
        expected = [("viewed", 1), ("accepted", 1), ("signed", 1), ("viewed", 2),
                    ("accepted", 2), ("signed", 2), ("completed", None)]
        await wait_until_async(lambda: len(receiver.received) == len(expected),
                               "every event")
        for headers, raw in receiver.received:
            assert verify(hook["secret"], headers[SIGNATURE_HEADER], raw, now=time.time())
        events = receiver.events(hook["secret"])
        assert [(e["event"], e["data"].get("signer", {}).get("order")) for e in events] \
            == expected
        pdf = await portal.call(
            "GET", f"/api/v1/transactions/{tx['id']}/documents/{done['documents'][0]['id']}",
            auth=True)
        await _check_b_lta(pdf, stack)

    async def run() -> None:
        async with receiving(receiver) as url:
            on_stack: OnStack = with_stack(
                tmp_path, simulated_card, smtp_host="127.0.0.1", smtp_port=sink.port,
                webhook_url_prefixes=[url])
            # The stack runs its own event loop; this one serves the receiver meanwhile.
            await asyncio.to_thread(on_stack, lambda stack: scenario(stack, url))

    asyncio.run(run())


async def _check_b_lta(pdf: bytes, stack: Stack) -> None:
    """Both signatures valid offline from the DSS, each followed by a document
    time-stamp (EN 319 142-1 §6.4 B-LTA) that validates against the CA's root."""
    reader = PdfFileReader(BytesIO(pdf))
    assert "/DSS" in reader.root
    # Each signer's signature is made B-LTA: a document time-stamp after each.
    stamps = reader.embedded_timestamp_signatures
    regular = reader.embedded_regular_signatures
    assert len(regular) == 2 and len(stamps) == 2
    assert all(t.sig_object_type == "/DocTimeStamp" for t in stamps)
    assert max(t.signed_revision for t in stamps) > max(s.signed_revision for s in regular)
    # The first signer's visible signature where the requester placed it; the second's
    # invisible (ISO 32000-1 §12.7.4.5: a widget of zero size).
    first, second = sorted(regular, key=lambda sig: sig.signed_revision)
    assert [float(v) for v in first.sig_field["/Rect"]] == [50, 700, 250, 760]
    assert "/AP" in first.sig_field
    x1, y1, x2, y2 = (float(v) for v in second.sig_field["/Rect"])
    assert x1 == x2 and y1 == y2
    context = DocumentSecurityStore.read_dss(reader).as_validation_context({
        "trust_roots": [x509.Certificate.load(stack.pki.root)],
        "other_certs": [x509.Certificate.load(stack.pki.issuing)],
        "revocation_mode": "soft-fail", "allow_fetching": False})
    for stamp in stamps:
        status = await async_validate_pdf_timestamp(stamp, validation_context=context)
        assert status.valid and status.intact and status.trusted, status
    context = DocumentSecurityStore.read_dss(reader).as_validation_context({
        "trust_roots": [x509.Certificate.load(stack.pki.root)],
        "other_certs": [x509.Certificate.load(stack.pki.issuing)],
        "revocation_mode": "hard-fail", "allow_fetching": False})
    for signature in regular:  # offline, from the DSS, as tests/support/portal_pki.py
        checked = await async_validate_pdf_signature(signature, context)
        assert checked.bottom_line, checked.summary()
