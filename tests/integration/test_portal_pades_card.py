"""The portal's deferred PAdES with the key on the simulated card, through pcscd + vpcd and
the token layer: the card's key gets a qualified certificate from our CA's enrolment
(attestation + identity evidence over HTTP), the portal checks it is qualified, prepares
a PDF, the card signs the prepared digest (as the agent's signatures/signHash does), the
portal completes a PAdES B-LT, a second signer follows, and pyHanko validates both
signatures offline."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from agent.tokens.model import KeyType, SignatureAlgorithm
from agent.tokens.pcsc import PcscConnection, PcscContext
from agent.tokens.piv import PivToken
from firmware_sim.attestation import Manufacturer
from portal import pades
from portal.certificates import check_qualified
from portal.pades import Level
from tests.support.ca_fixtures import IdentityService, b64, card_csr
from tests.support.pcsc import RunningCard
from tests.support.pdfs import blank_pdf
from tests.support.portal_pki import PortalPki, running_pki, validate_pdf

PIN = "123456"
SLOT = "9C"  # PIV digital signature key: the PIN is verified for each signature


@pytest.fixture
def pki(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[PortalPki]:
    for pki in running_pki(tmp_path / "ca"):
        pki.authority.trust_manufacturer(manufacturer.root_certificate.public_bytes(
            Encoding.PEM))
        yield pki


@pytest.fixture
def card_token(simulated_card: RunningCard) -> Iterator[PivToken]:
    context = PcscContext()
    token = PivToken(PcscConnection(context, simulated_card.reader),
                     reader=simulated_card.reader)
    yield token
    token.close()
    context.close()


def enrol(pki: PortalPki, token: PivToken) -> tuple[bytes, list[bytes]]:
    """A key generated on the card, certified by the CA's /v1/enrol; the certificate is
    written back to the card, as the enrolment flow does."""
    identity = IdentityService()
    pki.authority.trust_identity_service(identity.pem)
    spki = token.generate_key(SLOT, KeyType.EC_P256)
    body = {"csr": b64(card_csr(token, SLOT, spki, PIN)),
            "attestation": [b64(d) for d in token.attest(SLOT)],
            "evidence": identity.evidence(hashlib.sha256(spki).hexdigest())}
    request = urllib.request.Request(  # noqa: S310 - loopback
        pki.base + "/v1/enrol", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        issued = json.loads(response.read())
    certificate = base64.b64decode(issued["certificate"])
    token.put_certificate(SLOT, certificate, pin=PIN)
    credential = next(c for c in token.credentials() if c.id == SLOT)
    assert credential.certificate == certificate
    return certificate, [base64.b64decode(c) for c in issued["chain"]]


def test_card_signs_a_b_lt_pdf_then_a_second_signer(pki: PortalPki, card_token: PivToken
                                                     ) -> None:
    certificate, chain = enrol(pki, card_token)
    validation = pki.validation()

    async def scenario() -> bytes:
        check = await check_qualified(certificate, chain, trust_roots=[pki.root],
                                      at=dt.datetime.now(dt.UTC), ocsp=True)
        assert check.qualified, check.reasons
        assert check.common_name == "Marie Curie"
        prepared = await pades.prepare(blank_pdf(2), certificate, chain, level=Level.B_LT,
                                       field_name="Signer1", signer_name=check.common_name,
                                       reason="Contract", location="Paris",
                                       validation=validation)
        stored = prepared.to_bytes()
        # the agent's part: one hash, signed on the card after the PIN
        value = await asyncio.to_thread(
            card_token.sign_digest, SLOT, prepared.digest,
            SignatureAlgorithm.parse("ECDSA_SHA256"), PIN)
        with pytest.raises(pades.SignatureInvalid):
            await pades.complete(pades.Prepared.from_bytes(stored), value[:-1] + b"\x00",
                                 validation=validation)
        once = await pades.complete(pades.Prepared.from_bytes(stored), value,
                                    validation=validation)
        second = pki.issue("p384", "Durand")
        prepared = await pades.prepare(once, second.certificate, second.chain,
                                       level=Level.B_LT, field_name="Signer2",
                                       signer_name="Alice Durand", validation=validation)
        twice = await pades.complete(prepared, second.sign(prepared.signed_attributes),
                                     validation=validation)
        assert twice.startswith(once)
        return twice

    signed = asyncio.run(scenario())
    result = asyncio.run(validate_pdf(signed, [pki.root], offline=True))
    assert result.has_dss and len(result.statuses) == 2
    for status in result.statuses:
        assert status.intact and status.valid and status.bottom_line, \
            status.pretty_print_details()
        assert status.timestamp_validity is not None and status.timestamp_validity.valid
    card_signature = result.statuses[0]
    assert card_signature.signing_cert.dump() == certificate
