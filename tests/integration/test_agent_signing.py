"""Two factors and signing through the agent, with the simulated card behind pcscd:
pyHanko's own CSCSigner signs a PDF through /csc/v1; the WebSocket path enforces
OTP before PIN and single-use SADs bound to the hashes and the origin."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key
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

from agent.tokens.registry import TokenRegistry
from firmware_sim.state import CardStore
from tests.support import piv_apdus as piv
from tests.support.agent_ws import PORTAL, Agent, rpc, with_agent
from tests.support.csc_client import TotpAuthorization
from tests.support.pcsc import RunningCard, connect
from tests.support.pdfs import blank_pdf
from tests.support.provision import CertIssuer, PyscardConnection, provision
from tests.support.second_factor import enrol_totp

PIN = "123456"


def _provisioned(card: RunningCard) -> tuple[CertIssuer, bytes]:
    connection = connect(card.reader)
    issuer = CertIssuer()
    cert = provision(PyscardConnection(connection), 0x9C, piv.ALG_P256, issuer)
    connection.disconnect()
    return issuer, cert.public_bytes(Encoding.DER)


async def _credential(agent: Agent, ws: aiohttp.ClientWebSocketResponse) -> str:
    tokens = (await rpc(ws, "tokens/list"))["result"]["tokens"]
    return f"{tokens[0]['id']}/9C"


async def _enrol_totp(ws: aiohttp.ClientWebSocketResponse, credential: str,
                      state_dir: Path) -> pyotp.TOTP:
    totp = await enrol_totp(ws, credential, PIN, state_dir)
    assert totp.secret
    return totp


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_pyhanko_csc_signer_signs_a_pdf_with_the_card(simulated_card: RunningCard,
                                                       tmp_path: Path) -> None:
    issuer, _ = _provisioned(simulated_card)

    @with_agent(tmp_path, registry=TokenRegistry())
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        credential = await _credential(agent, ws)
        totp = await _enrol_totp(ws, credential, agent.config.state_dir)
        await ws.close()
        token = (agent.config.state_dir / "csc.token").read_text().strip()
        assert (agent.config.state_dir / "csc.token").stat().st_mode & 0o777 == 0o600
        session_info = CSCServiceSessionInfo(agent.url, credential, oauth_token=token)
        async with aiohttp.ClientSession(headers={
                "Host": f"127.0.0.1:{agent.config.port}"}) as session:
            info = await fetch_certs_in_csc_credential(session, session_info)
            signer = CSCSigner(session, TotpAuthorization(session_info, info, session, totp,
                                                          PIN))
            writer = IncrementalPdfFileWriter(BytesIO(blank_pdf()))
            output = BytesIO()
            await signers.async_sign_pdf(
                writer, signers.PdfSignatureMetadata(field_name="Signature1"),
                signer=signer, output=output)
        reader = PdfFileReader(output)
        trust = asn1_x509.Certificate.load(issuer.root_certificate())
        status = await async_validate_pdf_signature(reader.embedded_signatures[0],
                                                    ValidationContext(trust_roots=[trust]))
        assert status.intact and status.valid, status.pretty_print_details()
        (tmp_path / "signed.pdf").write_bytes(output.getvalue())




def _pin_retries(card: RunningCard) -> int:
    return CardStore.load(card.state_path).state.pin.retries_left


def test_two_factors_and_sad_rules_over_the_socket(simulated_card: RunningCard,
                                                   tmp_path: Path) -> None:
    _, cert_der = _provisioned(simulated_card)
    public = load_der_public_key(_spki_of(cert_der))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    documents = [hashlib.sha256(f"document {i}".encode()).digest() for i in range(3)]

    @with_agent(tmp_path, registry=TokenRegistry())
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        credential = await _credential(agent, ws)
        totp = await _enrol_totp(ws, credential, agent.config.state_dir)
        hashes64 = [_b64(d) for d in documents]

        async def authorize(otp: str, rid: int) -> dict[str, Any]:
            return await rpc(ws, "credentials/authorize", {
                "credentialID": credential, "hashes": hashes64, "PIN": PIN, "OTP": otp}, rid)

        async def sign_hash(sad: str, hs: list[str], rid: int, **extra: str) -> dict[str, Any]:
            return await rpc(ws, "signatures/signHash", {
                "credentialID": credential, "SAD": sad, "hashes": hs, **extra}, rid)

        before = _pin_retries(simulated_card)
        wrong = await authorize("000000" if totp.now() != "000000" else "111111", 10)
        assert wrong["error"]["data"]["error"] == "INVALID_OTP"
        assert _pin_retries(simulated_card) == before, "a wrong OTP cost a PIN try"

        code = totp.now()
        sad = (await authorize(code, 11))["result"]["SAD"]
        replayed_otp = await authorize(code, 12)
        assert replayed_otp["error"]["data"]["error"] == "INVALID_OTP"

        other = await sign_hash(sad, [_b64(hashlib.sha256(b"not authorised").digest())], 13)
        assert other["error"]["data"] == {"error": "SAD_INVALID", "reason": "hashes"}
        used = await sign_hash(sad, hashes64, 14)  # a refused attempt uses the SAD up
        assert used["error"]["data"]["error"] == "SAD_INVALID"

        fresh = await authorize(totp.at(time.time() + 30), 15)  # the next step, once
        assert fresh["result"]["expiresIn"] <= 300
        sad = fresh["result"]["SAD"]
        signed = await sign_hash(sad, hashes64, 16, idempotencyKey="retry-0001")
        signatures = [base64.b64decode(s) for s in signed["result"]["signatures"]]
        for digest, signature in zip(documents, signatures, strict=True):
            public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        retried = await sign_hash(sad, hashes64, 17, idempotencyKey="retry-0001")
        assert retried["result"] == signed["result"], "a retry must not sign again"
        replay = await sign_hash(sad, hashes64, 18)
        assert replay["error"]["data"]["error"] == "SAD_INVALID"
        await ws.close()


def test_wrong_pin_after_a_good_otp(simulated_card: RunningCard, tmp_path: Path) -> None:
    _provisioned(simulated_card)

    @with_agent(tmp_path, registry=TokenRegistry())
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        credential = await _credential(agent, ws)
        totp = await _enrol_totp(ws, credential, agent.config.state_dir)
        reply = await rpc(ws, "credentials/authorize", {
            "credentialID": credential, "hashes": [_b64(hashlib.sha256(b"d").digest())],
            "PIN": "999999", "OTP": totp.now()})
        assert reply["error"]["data"] == {"error": "INVALID_PIN", "attemptsLeft": 2}
        await ws.close()


def _spki_of(cert_der: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import PublicFormat

    return x509.load_der_x509_certificate(cert_der).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_sad_bound_to_origin(simulated_card: RunningCard, tmp_path: Path) -> None:
    _provisioned(simulated_card)

    @with_agent(tmp_path, registry=TokenRegistry(),
                allowed_origins=(PORTAL, "https://second.example.test"))
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        credential = await _credential(agent, ws)
        totp = await _enrol_totp(ws, credential, agent.config.state_dir)
        digest = _b64(hashlib.sha256(b"x").digest())
        sad = (await rpc(ws, "credentials/authorize", {
            "credentialID": credential, "hashes": [digest], "PIN": PIN,
            "OTP": totp.now()}))["result"]["SAD"]
        elsewhere = await agent.connect("https://second.example.test")
        stolen = await rpc(elsewhere, "signatures/signHash", {
            "credentialID": credential, "SAD": sad, "hashes": [digest]})
        assert stolen["error"]["data"] == {"error": "SAD_INVALID", "reason": "origin"}
        await elsewhere.close()
        await ws.close()


def test_sign_pdfs_over_the_socket_with_one_authorisation(simulated_card: RunningCard,
                                                          tmp_path: Path) -> None:
    issuer, _ = _provisioned(simulated_card)
    pdfs = [blank_pdf(1), blank_pdf(2)]

    @with_agent(tmp_path, registry=TokenRegistry(), max_message_bytes=1024 * 1024)
    async def scenario(agent: Agent) -> None:
        ws = await agent.connect()
        credential = await _credential(agent, ws)
        totp = await _enrol_totp(ws, credential, agent.config.state_dir)
        before = _pin_retries(simulated_card)
        refused = await rpc(ws, "documents/signPdf", {
            "credentialID": credential, "PIN": PIN, "OTP": "000000" if totp.now() != "000000"
            else "111111", "documents": [_b64(p) for p in pdfs]}, 30)
        assert refused["error"]["data"]["error"] == "INVALID_OTP"
        assert _pin_retries(simulated_card) == before
        reply = await rpc(ws, "documents/signPdf", {
            "credentialID": credential, "PIN": PIN, "OTP": totp.now(),
            "documents": [_b64(p) for p in pdfs]}, 31)
        signed = [base64.b64decode(d) for d in reply["result"]["documents"]]
        trust = asn1_x509.Certificate.load(issuer.root_certificate())
        for data in signed:
            status = await async_validate_pdf_signature(
                PdfFileReader(BytesIO(data)).embedded_signatures[0],
                ValidationContext(trust_roots=[trust]))
            assert status.intact and status.valid
        broken = await rpc(ws, "documents/signPdf", {
            "credentialID": credential, "PIN": PIN, "OTP": totp.at(time.time() + 30),
            "documents": [_b64(b"%PDF-1.7 this is not a PDF")]}, 32)
        assert broken["error"]["data"]["error"] == "BAD_REQUEST"
        assert "Traceback" not in json.dumps(broken)
        await ws.close()
