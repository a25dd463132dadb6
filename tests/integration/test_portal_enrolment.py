"""A first-time signer end to end without the browser: a factory-fresh simulated card,
the portal with its reference identity service (specimen ID card read by tesseract,
timed liveness challenges), the agent (PIN change, key generation and attestation on the
card, the CA's enrolment) and the CA on loopback; then the documents are signed with the
new certificate and validate as PAdES B-LT under it. The test plays the page."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import x509
from cryptography.hazmat.primitives.serialization import Encoding

from firmware_sim.attestation import Manufacturer
from portal.identity.evidence import EvidenceSigner
from portal.identity.mrz import DocumentFormat
from tests.support.agent_ws import PORTAL as ORIGIN
from tests.support.agent_ws import page_socket, rpc
from tests.support.identity_fixtures import make_specimen, selfie
from tests.support.pcsc import RunningCard
from tests.support.portal_pki import start_pki, validate_pdf
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.waiting import wait_until_async

FACTORY_PIN = "123456"
NEW_PIN = "2468"
PHONE = "+33612345670"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Page:
    """What the signer's page does, step by step."""

    def __init__(self, portal: RunningPortal, ws: aiohttp.ClientWebSocketResponse,
                 invite: str) -> None:
        self.portal = portal
        self.ws = ws
        self.invite = invite
        self.ids = 1000

    async def agent(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        return await rpc(self.ws, method, params, self.ids)

    async def step(self, name: str, body: dict[str, Any] | None = None,
                   expect: int = 200) -> Any:
        return await self.portal.call("POST", f"/api/s/{self.invite}/enrolment/{name}",
                                      body or {}, expect=expect)

    async def identity(self, path: str, method: str = "POST", body: Any = None,
                       data: bytes | None = None) -> Any:
        url = f"{self.portal.url}/api/identity/sessions/{path}"
        kwargs: dict[str, Any] = {"json": body} if data is None else {
            "data": data, "headers": {"Content-Type": "image/png"}}
        async with self.portal.session.request(method, url, **kwargs) as response:
            answer = await response.json()
            assert response.status == 200, answer
            return answer


async def _first_time_journey(page: Page, token_id: str) -> bytes:
    portal = page.portal
    view = await page.step("start")
    assert view["step"] == "enrolment" and view["enrolment"]["step"] == "personal-data"
    view = await page.step("personal-data", {"correct": True})
    consents = [{k: c[k] for k in ("kind", "version", "sha256")}
                for c in view["enrolment"]["consents"]]
    assert {c["kind"] for c in consents} == {"issuance", "space"}
    view = await page.step("consents", {"accepted": consents})
    assert view["enrolment"]["step"] == "identity"
    view = await page.step("identity", {"document": "id-card"})
    session = view["identitySession"]
    card = make_specimen(DocumentFormat.TD1, surname="Curie", given_names="Marie")
    for side, image in card.images.items():
        await page.identity(f"{session}/sides/{side.value}", "PUT", data=image)
    while True:
        state = await page.identity(session, "GET")
        if state["step"] != "liveness":
            break
        challenge = await page.identity(f"{session}/challenges/next")
        portal.clock.advance(seconds=2)  # a person takes a moment to act
        await page.identity(f"{session}/challenges/{challenge['id']}",
                            body={"nonce": challenge["nonce"], "frames": [
                                _b64(f) for f in selfie(challenge["action"])]})
    assert state["step"] == "verified", state
    # The session id travels in the hand-off QR code: the mounted identity service does
    # not give the identity or evidence to whoever holds it (the portal asks itself).
    for method, path in (("GET", "identity"), ("POST", "evidence")):
        async with portal.session.request(
                method, f"{portal.url}/api/identity/sessions/{session}/{path}",
                json={"publicKey": _b64(b"k" * 91)}) as response:
            assert response.status in (404, 405), path
    view = await page.step("identity-done")
    enrolment = view["enrolment"]
    assert enrolment["step"] == "identity-confirm"
    assert enrolment["comparison"] == {"matches": True, "differences": []}
    assert enrolment["identity"]["surname"] == "Curie"
    view = await page.step("identity-confirm", {"correct": True})
    err = await page.step("auth-data", {"givenNames": "Pierre", "surname": "Curie",
                                        "phone": PHONE}, expect=422)
    assert err["error"] == "NAME_NOT_ON_DOCUMENT"
    view = await page.step("auth-data", {"givenNames": "Marie", "surname": "Curie",
                                         "phone": PHONE})
    assert view["enrolment"]["step"] == "pin"
    # No PIN reaches the token before a second factor; a first-time signer has none yet,
    # so the portal texts a code bound to this token and the agent spends it.
    refused = await page.agent("pin/change", {"tokenID": token_id, "PIN": FACTORY_PIN,
                                              "newPIN": NEW_PIN})
    assert refused["error"]["data"]["error"] == "SECOND_FACTOR_REQUIRED", refused
    sent = await page.step("otp", {"tokenID": token_id})
    assert sent["expiresIn"] == 300 and "otpSession" in sent
    code = re.search(r"\b(\d{6})\b", portal.sms(PHONE)[-1])
    assert code is not None
    proof = await page.agent("secondFactor/verify", {
        "tokenID": token_id, "OTP": code.group(1), "otpSession": sent["otpSession"]})
    assert proof["result"] == {"tokenID": token_id, "method": "sms", "expiresIn": 300}
    # The PIN goes to the card through the agent; the portal only hears it was set.
    reply = await page.agent("pin/change", {"tokenID": token_id, "PIN": FACTORY_PIN,
                                            "newPIN": "12"})
    assert reply["error"]["data"]["error"] == "INVALID_PARAMS", reply
    reply = await page.agent("pin/change", {"tokenID": token_id, "PIN": FACTORY_PIN,
                                            "newPIN": NEW_PIN})
    assert "result" in reply, reply
    view = await page.step("pin-set")
    request = view["enrolment"]["request"]
    assert request["subject"]["commonName"] == "Marie Curie"
    assert request["validityYears"] == 5 and "QCP-n-qscd" in request["policy"]
    assert request["subject"]["country"] == "FR"
    generated = await page.agent("enroll/generate", {"tokenID": token_id, "PIN": NEW_PIN})
    assert "result" in generated, generated
    again = await page.agent("enroll/generate", {"tokenID": token_id, "PIN": NEW_PIN})
    assert again["result"]["resumed"] is True  # no second key
    assert again["result"]["publicKey"] == generated["result"]["publicKey"]
    evidence = await page.step("evidence", {"publicKey": generated["result"]["publicKey"],
                                            "accept": True})
    enrolled = await page.agent("enroll/complete", {
        "enrolmentID": generated["result"]["enrolmentID"], "evidence": evidence["evidence"]})
    assert "result" in enrolled, enrolled
    repeated = await page.agent("enroll/complete", {
        "enrolmentID": generated["result"]["enrolmentID"], "evidence": evidence["evidence"]})
    assert repeated["result"]["serial"] == enrolled["result"]["serial"]  # one certificate
    certificate = base64.b64decode(enrolled["result"]["certificate"])
    view = await page.step("certificate", {"certificate": enrolled["result"]["certificate"],
                                           "chain": enrolled["result"]["chain"]})
    issued = x509.Certificate.load(certificate).subject.native
    assert issued["serial_number"] == request["subject"]["serialNumber"]  # what was read
    assert issued["country_name"] == "FR"
    assert view["step"] == "documents" and view["enrolment"]["step"] == "done"
    return certificate


async def _sign(page: Page, credential: str) -> None:
    portal = page.portal
    invite = page.invite
    view = await portal.call("POST", f"/api/s/{invite}/accept", {})
    assert view["step"] == "sign"
    info = await page.agent("credentials/info", {"credentialID": credential})
    certificate = info["result"]["cert"]["certificates"][0]
    prepared = await portal.call("POST", f"/api/s/{invite}/sign/prepare", {
        "certificate": certificate, "chain": [], "phoneConfirmed": True})
    sent = await page.agent("credentials/sendOTP", {
        "credentialID": credential, "hashes": prepared["hashes"],
        "otpSession": prepared["otpSession"]})
    assert "result" in sent, sent
    code = re.search(r"\b(\d{6})\b", portal.sms(PHONE)[-1])
    assert code is not None
    authorized = await page.agent("credentials/authorize", {
        "credentialID": credential, "hashes": prepared["hashes"], "PIN": NEW_PIN,
        "OTP": code.group(1), "otpSession": prepared["otpSession"]})
    assert "result" in authorized, authorized
    signed = await page.agent("signatures/signHash", {
        "credentialID": credential, "SAD": authorized["result"]["SAD"],
        "hashes": prepared["hashes"]})
    view = await portal.call("POST", f"/api/s/{invite}/sign/complete", {
        "sessionId": prepared["sessionId"], "signatures": signed["result"]["signatures"]})
    assert view["step"] == "done"


def test_first_time_signer_enrols_then_signs(simulated_card: RunningCard,
                                             manufacturer: Manufacturer,
                                             tmp_path: Path) -> None:
    pki = start_pki(tmp_path / "ca")
    try:
        pki.authority.trust_manufacturer(
            manufacturer.root_certificate.public_bytes(Encoding.PEM))
        identity_key = EvidenceSigner.open(tmp_path / "portal" / "identity")
        pki.authority.trust_identity_service(identity_key.certificate_pem)
        root = tmp_path / "root.der"
        root.write_bytes(pki.root)
        issuing = tmp_path / "issuing.der"
        issuing.write_bytes(pki.issuing)

        async def main() -> None:
            async with running_portal(tmp_path, trust_roots=[str(root)],
                                      intermediates=[str(issuing)],
                                      timestamp_url=f"{pki.base}/tsa",
                                      identity_accept_specimens=True) as portal, page_socket(
                    portal.session, tmp_path / "agent", ORIGIN, portal_url=portal.url,
                    otp_mode="sms", portal_token_file=portal.agent_token_file,
                    ca_url=pki.base) as ws:
                await _scenario(portal, ws)

        asyncio.run(main())
    finally:
        pki.stop()


async def _scenario(portal: RunningPortal, ws: aiohttp.ClientWebSocketResponse) -> None:
    # The requester wrote the name as on the document (accents and case aside).
    tx = await portal.create(documents=2, level="B-LT", signers=[
        {"name": "marie CURIE", "email": "marie@example.test", "phone": PHONE}])
    invite = portal.invite_path(tx, 0)
    page = Page(portal, ws, invite)
    async def listed() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await page.agent("tokens/list", {}))["result"]["tokens"]
        return found

    tokens = await wait_until_async(listed, "the agent to list the card", interval=0.1)
    token_id = tokens[0]["id"]
    # Factory-fresh: no qualified certificate anywhere, so the page enrols.
    credentials = (await page.agent("credentials/list", {"tokenID": token_id}))["result"]
    assert not [c for c in credentials["credentials"] if c["hasCertificate"]]
    await portal.consent(invite)
    certificate = await _first_time_journey(page, token_id)
    subject = x509.Certificate.load(certificate).subject.native
    assert (subject["given_name"], subject["surname"]) == ("Marie", "Curie")
    await _sign(page, f"{token_id}/9C")
    for document in tx["documents"]:
        pdf = await portal.call(
            "GET", f"/api/v1/transactions/{tx['id']}/documents/{document['id']}", auth=True)
        result = await validate_pdf(pdf, [portal.state.desk.roots[0]], offline=True)
        assert result.has_dss
        [status] = result.statuses
        assert status.bottom_line, status.pretty_print_details()
        assert status.signing_cert.dump() == certificate
