"""What the signer's steps tell people, over a real portal on loopback: a correction of
personal data reaches the requester by e-mail (and the thread) unless the portal's
setting turns the mail off; a new link's mail says it replaces the previous one; a
signer who signed downloads the signed documents with the invitation link; the
requester's completion mail points at the transaction, not at a Personal Space they do
not have; /favicon.ico is served. Signing uses a software key the test CA certified."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from portal.store import Mail
from tests.support.portal_pki import PortalPki, running_pki
from tests.support.portal_service import RunningPortal, running_portal

PHONE = "+33611111111"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from running_pki(tmp_path_factory.mktemp("ca"))


def _mails(portal: RunningPortal, to: str) -> list[Mail]:
    return [m for m in portal.store.mails() if m.to == to]


async def _at_personal_data(portal: RunningPortal, **extra: Any) -> tuple[Any, str]:
    tx = await portal.create(signers=1, documents=1, **extra)
    invite = portal.invite_path(tx, 0)
    await portal.consent(invite)
    view = await portal.call("POST", f"/api/s/{invite}/enrolment/start", {})
    assert view["enrolment"]["step"] == "personal-data", view
    return tx, invite


async def _correct(portal: RunningPortal, invite: str) -> str:
    reply = await portal.call("POST", f"/api/s/{invite}/enrolment/personal-data", {
        "correct": False, "name": "Alice Marie Martin", "phone": "+33699999999"})
    url: str = reply["inviteUrl"]
    return url


def test_a_correction_is_mailed_to_the_requester_and_the_new_link_replaces(
        tmp_path: Path) -> None:
    asyncio.run(_correction_mailed(tmp_path))


async def _correction_mailed(tmp_path: Path) -> None:
    async with running_portal(tmp_path) as portal:
        tx, invite = await _at_personal_data(portal, messaging=True)
        new_url = await _correct(portal, invite)
        [mail] = _mails(portal, "agence@example.test")
        assert mail.subject == "Personal data corrected: Lease agreement"
        assert "Alice Martin -> Alice Marie Martin" in mail.body
        assert "+33612345670 -> +33699999999" in mail.body
        assert f"{portal.config.base_url}/requester?tx={tx['id']}" in mail.body
        # The thread has it too, as before.
        messages = await portal.call("GET", f"/api/v1/transactions/{tx['id']}/messages",
                                     auth=True)
        assert any("personal data corrected" in m["text"] for m in messages["messages"])
        first, renewed = _mails(portal, "s1@example.test")
        assert "replaces" not in first.body
        assert renewed.subject == "New link to sign: Lease agreement"
        assert new_url in renewed.body
        assert "replaces the one we sent you before" in renewed.body
        # Without messaging the mail still goes (it was the only channel before, too).
        tx, invite = await _at_personal_data(portal, messaging=False)
        await _correct(portal, invite)
        assert len(_mails(portal, "agence@example.test")) == 2


def test_the_setting_off_keeps_the_correction_out_of_the_mailbox(
        tmp_path: Path) -> None:
    asyncio.run(_setting_off(tmp_path))


async def _setting_off(tmp_path: Path) -> None:
    async with running_portal(tmp_path, notify_requester_on_correction=False) as portal:
        tx, invite = await _at_personal_data(portal, messaging=True)
        await _correct(portal, invite)
        assert _mails(portal, "agence@example.test") == []
        messages = await portal.call("GET", f"/api/v1/transactions/{tx['id']}/messages",
                                     auth=True)
        assert len(messages["messages"]) == 1


def test_restart_mails_a_link_that_replaces_the_previous_one(tmp_path: Path) -> None:
    asyncio.run(_restart_mailed(tmp_path))


async def _restart_mailed(tmp_path: Path) -> None:
    async with running_portal(tmp_path) as portal:
        tx = await portal.create(signers=1, documents=1)
        invite = portal.invite_path(tx, 0)
        await portal.consent(invite)
        reply = await portal.call("POST", f"/api/s/{invite}/restart", {})
        renewed = _mails(portal, "s1@example.test")[-1]
        assert reply["inviteUrl"] in renewed.body
        assert "no longer works" in renewed.body
        # In the signer's language (the second made-up signer reads French).
        tx = await portal.create(signers=[{"name": "Bob Durand", "email": "b@example.test",
                                           "lang": "fr"}], documents=1)
        invite = portal.invite_path(tx, 0)
        await portal.consent(invite)
        await portal.call("POST", f"/api/s/{invite}/restart", {})
        assert _mails(portal, "b@example.test")[-1].subject.startswith("Nouveau lien")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _sign(portal: RunningPortal, pki: PortalPki, invite: str) -> Any:
    signer = pki.issue("p256")  # names Alice Martin, as the invitation does
    await portal.call("POST", f"/api/s/{invite}/accept", {})
    prepared = await portal.call("POST", f"/api/s/{invite}/sign/prepare", {
        "certificate": _b64(signer.certificate), "chain": [_b64(pki.issuing)],
        "phoneConfirmed": True})
    otp = {"session": prepared["otpSession"], "hashes": prepared["hashes"]}
    await portal.call("POST", "/api/v1/sms-otp/send", otp, agent=True)
    code = re.search(r"\b\d{6}\b", portal.sms(PHONE)[-1])
    assert code is not None
    await portal.call("POST", "/api/v1/sms-otp/verify", {**otp, "code": code.group()},
                      agent=True)
    key = signer.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signatures = [_b64(key.sign(base64.b64decode(h), ec.ECDSA(Prehashed(hashes.SHA256()))))
                  for h in prepared["hashes"]]
    return await portal.call("POST", f"/api/s/{invite}/sign/complete", {
        "sessionId": prepared["sessionId"], "signatures": signatures})


def test_signed_documents_download_and_the_requesters_completion_mail(
        tmp_path: Path, pki: PortalPki) -> None:
    asyncio.run(_signed_download(tmp_path, pki))


async def _signed_download(tmp_path: Path, pki: PortalPki) -> None:
    root = tmp_path / "root.der"
    root.write_bytes(pki.root)
    async with running_portal(tmp_path, trust_roots=[str(root)],
                              check_revocation=False) as portal:
        tx = await portal.create(signers=[{"name": "Alice Martin", "email": "s@example.test",
                                           "phone": PHONE}], documents=2)
        invite = portal.invite_path(tx, 0)
        await portal.consent(invite)
        refused = await portal.call("GET", f"/api/s/{invite}/signed.zip", expect=409)
        assert refused["error"] == "WRONG_STEP"
        view = await _sign(portal, pki, invite)
        assert view["step"] == "done"
        assert view["signer"]["signedAt"] is not None
        assert (view["transaction"]["signed"], view["transaction"]["signers"]) == (1, 1)
        async with portal.session.get(f"{portal.url}/api/s/{invite}/signed.zip") as answer:
            assert answer.status == 200
            assert "signed-documents.zip" in answer.headers["Content-Disposition"]
            archive = zipfile.ZipFile(io.BytesIO(await answer.read()))
        assert sorted(archive.namelist()) == ["doc1.pdf", "doc2.pdf"]
        for name in archive.namelist():
            assert archive.read(name).count(b"/ByteRange") == 1
        # A link that is not the signer's opens nothing.
        await portal.call("GET", f"/api/s/{invite}x/signed.zip", expect=403)
        [mail] = [m for m in _mails(portal, "agence@example.test")
                  if m.subject.startswith("Signed documents")]
        assert "Personal Space:" not in mail.body
        assert f"{portal.config.base_url}/requester?tx={tx['id']}" in mail.body
        assert "download the signed documents" in mail.body


def test_favicon(tmp_path: Path) -> None:
    asyncio.run(_favicon(tmp_path))


async def _favicon(tmp_path: Path) -> None:
    async with running_portal(tmp_path) as portal:
        async with portal.session.get(f"{portal.url}/favicon.ico") as answer:
            assert answer.status == 200
            assert answer.content_type == "image/vnd.microsoft.icon"
            assert (await answer.read())[:4] == b"\x00\x00\x01\x00"  # ICONDIR, type 1
        async with portal.session.get(f"{portal.url}/static/favicon.svg") as answer:
            assert answer.status == 200 and answer.content_type == "image/svg+xml"
