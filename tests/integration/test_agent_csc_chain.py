"""CSC `credentials/info` as the CSC API describes it (v1.0.4 §11.5, v2.0 §11.5), through
a real agent with a card the real CA enrolled: `certificates: chain` answers the signer's
certificate and its issuing CA (the card holds only the first; the agent fetches the
second from its configured CA through AIA caIssuers and keeps it), so pyHanko's
CSCSigner embeds the intermediate and the signature validates from the root alone;
`certInfo` and `authInfo` give the fields the specification names."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.signers.csc_signer import (
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from agent.tokens.model import KeyType
from agent.tokens.pcsc import PcscConnection, PcscContext
from agent.tokens.piv import PivToken
from agent.tokens.registry import TokenRegistry
from ca.authority import read_certificate
from firmware_sim.attestation import Manufacturer
from tests.support.agent_ws import Agent, rpc, with_agent
from tests.support.ca_fixtures import b64, card_csr
from tests.support.ca_process import RunningCa, start_ca
from tests.support.csc_client import TotpAuthorization
from tests.support.pcsc import RunningCard
from tests.support.pdfs import blank_pdf
from tests.support.second_factor import enrol_totp

PIN = "123456"


@pytest.fixture
def ca(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[RunningCa]:
    running = start_ca(tmp_path, manufacturer)
    yield running
    running.stop()


def _enrol_card(card: RunningCard, ca: RunningCa) -> bytes:
    """A key made on the card, certified by the CA (CSR, attestation, identity evidence),
    the certificate written back to slot 9C: the card holds no other certificate."""
    context = PcscContext()
    connection = PcscConnection(context, card.reader)
    try:
        token = PivToken(connection, reader=card.reader)
        spki = token.generate_key("9C", KeyType.EC_P256, pin=PIN)
        status, issued = ca.post_json("/v1/enrol", {
            "csr": b64(card_csr(token, "9C", spki, PIN)),
            "attestation": [b64(d) for d in token.attest("9C")],
            "evidence": ca.identity.evidence(hashlib.sha256(spki).hexdigest())})
        assert status == 201, issued
        certificate = base64.b64decode(issued["certificate"])
        token.put_certificate("9C", certificate, pin=PIN)
        return certificate
    finally:
        connection.close()
        context.close()


async def _info(agent: Agent, version: str, body: dict[str, Any]) -> dict[str, Any]:
    token = (agent.config.state_dir / "csc.token").read_text().strip()
    async with agent.session.post(f"{agent.url}/csc/{version}/credentials/info", json=body,
                                  headers={"Authorization": f"Bearer {token}",
                                           "Host": f"127.0.0.1:{agent.config.port}"}) as answer:
        reply: dict[str, Any] = await answer.json()
        assert answer.status == 200, reply
        return reply


def _generalized(when: asn1_x509.Time) -> str:
    return str(when.native.strftime("%Y%m%d%H%M%SZ"))


def test_csc_signer_embeds_the_chain_the_agent_completes_from_its_ca(
        simulated_card: RunningCard, ca: RunningCa, tmp_path: Path) -> None:
    leaf = _enrol_card(simulated_card, ca)
    issuing = read_certificate(ca.pem("issuing"))
    root = read_certificate(ca.pem("root"))

    @with_agent(tmp_path, registry=TokenRegistry(), ca_url=ca.base)
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        tokens = (await rpc(ws, "tokens/list"))["result"]["tokens"]
        credential = f"{tokens[0]['id']}/9C"
        totp = await enrol_totp(ws, credential, PIN, agent.config.state_dir)
        await ws.close()
        token = (agent.config.state_dir / "csc.token").read_text().strip()
        session_info = CSCServiceSessionInfo(agent.url, credential, oauth_token=token)
        async with aiohttp.ClientSession(headers={
                "Host": f"127.0.0.1:{agent.config.port}"}) as session:
            info = await fetch_certs_in_csc_credential(session, session_info)
            assert info.signing_cert.dump() == leaf
            assert [c.dump() for c in info.chain] == [issuing.dump()]
            signer = CSCSigner(session, TotpAuthorization(session_info, info, session, totp,
                                                          PIN))
            output = BytesIO()
            await signers.async_sign_pdf(
                IncrementalPdfFileWriter(BytesIO(blank_pdf())),
                signers.PdfSignatureMetadata(field_name="Signature1"),
                signer=signer, output=output)
        signature = PdfFileReader(output).embedded_signatures[0]
        embedded = {c.chosen.dump() for c in signature.signed_data["certificates"]}
        assert issuing.dump() in embedded and leaf in embedded
        # The root alone, nothing fetched: the path comes from the CMS itself.
        status = await async_validate_pdf_signature(
            signature, ValidationContext(trust_roots=[root], allow_fetching=False))
        assert status.intact and status.valid and status.trusted, \
            status.pretty_print_details()

        cert = asn1_x509.Certificate.load(leaf)
        for version in ("v1", "v2"):
            described = await _info(agent, version, {
                "credentialID": credential, "certificates": "none", "certInfo": True})
            assert described["cert"] == {
                "status": "valid",
                "issuerDN": x509.load_der_x509_certificate(leaf).issuer.rfc4514_string(),
                "subjectDN": x509.load_der_x509_certificate(leaf).subject.rfc4514_string(),
                "serialNumber": format(cert.serial_number, "x"),
                "validFrom": _generalized(cert["tbs_certificate"]["validity"]["not_before"]),
                "validTo": _generalized(cert["tbs_certificate"]["validity"]["not_after"])}
            assert "Marie" in described["cert"]["subjectDN"]
            assert described["key"]["curve"] == "1.2.840.10045.3.1.7"
            single = await _info(agent, version, {"credentialID": credential})
            assert single["cert"]["certificates"] == [base64.b64encode(leaf).decode()]
            assert "issuerDN" not in single["cert"]
        v1 = await _info(agent, "v1", {"credentialID": credential, "authInfo": True})
        assert v1["authMode"] == "explicit" and v1["PIN"]["presence"] == "true"
        assert v1["OTP"]["presence"] == "true" and v1["OTP"]["type"] == "offline"
        v2 = await _info(agent, "v2", {"credentialID": credential, "authInfo": True})
        assert v2["auth"]["mode"] == "explicit"
        assert [o["id"] for o in v2["auth"]["objects"]] == ["PIN", "OTP"]
        assert "PIN" not in (await _info(agent, "v1", {"credentialID": credential}))

        # The page's credentials/info over the WebSocket carries the same chain.
        ws = await agent.connect()
        described = (await rpc(ws, "credentials/info", {"credentialID": credential}))
        await ws.close()
        assert described["result"]["cert"]["certificates"] == [
            base64.b64encode(der).decode() for der in (leaf, issuing.dump())]

        # Kept in the agent's state: the chain stays whole while the CA is down.
        ca.stop()
        chained = await _info(agent, "v2", {"credentialID": credential,
                                            "certificates": "chain"})
        assert chained["cert"]["certificates"] == [
            base64.b64encode(der).decode() for der in (leaf, issuing.dump())]
        assert list((agent.config.state_dir / "issuers").glob("*.der"))


def test_sign_pdf_over_the_websocket_embeds_the_issuing_ca(
        simulated_card: RunningCard, ca: RunningCa, tmp_path: Path) -> None:
    """`documents/signPdf` signs with what the card holds (the signer's certificate only):
    the agent completes the chain from its CA, so the CMS carries the issuing CA and the
    signature validates from the root alone, nothing fetched."""
    leaf = _enrol_card(simulated_card, ca)
    issuing = read_certificate(ca.pem("issuing"))
    root = read_certificate(ca.pem("root"))

    @with_agent(tmp_path, registry=TokenRegistry(), ca_url=ca.base)
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        tokens = (await rpc(ws, "tokens/list"))["result"]["tokens"]
        credential = f"{tokens[0]['id']}/9C"
        totp = await enrol_totp(ws, credential, PIN, agent.config.state_dir)
        reply = await rpc(ws, "documents/signPdf", {
            "credentialID": credential, "PIN": PIN, "OTP": totp.now(),
            "documents": [base64.b64encode(blank_pdf()).decode()]}, 40)
        await ws.close()
        signed = base64.b64decode(reply["result"]["documents"][0])
        signature = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
        embedded = {c.chosen.dump() for c in signature.signed_data["certificates"]}
        assert embedded == {leaf, issuing.dump()}
        status = await async_validate_pdf_signature(
            signature, ValidationContext(trust_roots=[root], allow_fetching=False))
        assert status.intact and status.valid and status.trusted, \
            status.pretty_print_details()
