"""The portal's HTTP surface without a signature: a real server on loopback, the
requester API, the signer's steps in order and out of order, links, messaging, the SMS
OTP endpoints the agent calls, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import stat
import zipfile

import pytest

from portal import legal
from portal.errors import PortalError
from portal.links import LinkSigner, Purpose
from portal.otp import MAX_FAILURES
from portal.service import sweep_expired
from tests.support.pdfs import blank_pdf
from tests.support.portal_service import RunningPortal, with_portal


@with_portal()
async def test_requester_creates_a_transaction_and_the_first_signer_is_invited(
        portal: RunningPortal) -> None:
    tx = await portal.create()
    assert tx["status"] == "open" and len(tx["documents"]) == 2
    assert [s["status"] for s in tx["signers"]] == ["invited", "waiting"]
    assert tx["signers"][1]["inviteUrl"] is None  # sequential: not yet
    assert tx["documents"][1]["pages"] == 2
    mails = portal.store.mails(to="s1@example.test")
    assert len(mails) == 1 and tx["signers"][0]["inviteUrl"] in mails[0].body
    assert not portal.store.mails(to="s2@example.test")
    listed = await portal.call("GET", "/api/v1/transactions", auth=True)
    assert [t["id"] for t in listed["transactions"]] == [tx["id"]]
    mode = stat.S_IMODE(os.stat(portal.config.state_dir / "requester.token").st_mode)
    assert mode == 0o600


@with_portal()
async def test_requester_api_needs_the_token_and_valid_bodies(portal: RunningPortal) -> None:
    err = await portal.call("GET", "/api/v1/transactions", expect=401)
    assert err["error"] == "UNAUTHORIZED"
    async with portal.session.get(portal.url + "/api/v1/transactions",
                                  headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401
    for body, needle in (
            ({}, "title"),
            ({"title": "x", "requester": {"name": "a", "email": "nope"}}, "email"),
            ({"title": "x", "requester": {"name": "a", "email": "a@b.c"},
              "documents": [{"name": "a.pdf", "content": base64.b64encode(
                  b"%PDF-1.7 not really").decode()}], "signers": [{"email": "s@b.c"}]},
             "documents[0]"),
            ({"title": "x", "requester": {"name": "a", "email": "a@b.c"},
              "documents": [{"name": "a.pdf", "content": "***"}],
              "signers": [{"email": "s@b.c"}]}, "base64"),
            ({"title": "x", "requester": {"name": "a", "email": "a@b.c"},
              "documents": [{"name": "a.pdf", "content": base64.b64encode(
                  blank_pdf()).decode()}], "signers": [{"email": "s@b.c",
                                                         "phone": "0612"}]}, "E.164")):
        err = await portal.call("POST", "/api/v1/transactions", body, auth=True, expect=None)
        assert err["error"] in ("BAD_REQUEST", "PDF_INVALID"), err
        assert needle in err["message"], err
    async with portal.session.post(portal.url + "/api/v1/transactions", data=b"[1,",
                                   headers={**portal.auth(),
                                            "Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "BAD_REQUEST"
    spec = await portal.call("GET", "/api/v1/openapi.json")
    assert "/api/v1/transactions" in spec["paths"]


@with_portal()
async def test_signer_journey_in_order(portal: RunningPortal) -> None:
    tx = await portal.create()
    invite = portal.invite_path(tx, 0)
    view = await portal.call("GET", f"/api/s/{invite}")
    assert view["step"] == "consent" and view["signer"]["phoneMasked"].endswith("70")
    assert "•" in view["signer"]["phoneMasked"]
    assert {c["kind"] for c in view["consents"]} == set(legal.KINDS)
    text = await portal.call("GET", view["consents"][0]["url"] + "?lang=en")
    assert hashlib.sha256(text).hexdigest() == view["consents"][0]["sha256"]
    # Out of order: documents are not shown before consent.
    err = await portal.call("POST", f"/api/s/{invite}/accept", {}, expect=409)
    assert err["error"] == "WRONG_STEP"
    doc = view["documents"][0]["id"]
    await portal.call("GET", f"/api/s/{invite}/documents/{doc}/pages/1.png", expect=409)
    # Only one of the two texts: refused.
    one = [{k: view["consents"][0][k] for k in ("kind", "version", "sha256")}]
    await portal.call("POST", f"/api/s/{invite}/consents", {"accepted": one}, expect=400)
    stale = [{**c, "sha256": "0" * 64} for c in (
        {k: c[k] for k in ("kind", "version", "sha256")} for c in view["consents"])]
    err = await portal.call("POST", f"/api/s/{invite}/consents", {"accepted": stale},
                            expect=409)
    assert err["error"] == "CONSENT_OUTDATED"
    view = await portal.consent(invite)
    assert view["step"] == "documents" and all(c["accepted"] for c in view["consents"])
    png = await portal.call("GET", f"/api/s/{invite}/documents/{doc}/pages/1.png?width=400")
    assert png.startswith(b"\x89PNG")
    await portal.call("GET", f"/api/s/{invite}/documents/{doc}/pages/9.png", expect=404)
    pdf = await portal.call("GET", f"/api/s/{invite}/documents/{doc}/download")
    assert hashlib.sha256(pdf).hexdigest() == view["documents"][0]["sha256"]
    archive = zipfile.ZipFile(io.BytesIO(await portal.call(
        "GET", f"/api/s/{invite}/documents.zip")))
    assert sorted(archive.namelist()) == ["doc1.pdf", "doc2.pdf"]
    view = await portal.call("POST", f"/api/s/{invite}/accept", {})
    assert view["step"] == "sign"
    # Once accepted, no unsigned download...
    err = await portal.call("GET", f"/api/s/{invite}/documents/{doc}/download", expect=409)
    assert err["error"] == "ALREADY_ACCEPTED"
    await portal.call("GET", f"/api/s/{invite}/documents.zip", expect=409)
    # ...unless the process is restarted: a new link, the old one revoked.
    restarted = await portal.call("POST", f"/api/s/{invite}/restart", {})
    new_invite = restarted["inviteUrl"].split("/s/", 1)[1]
    err = await portal.call("GET", f"/api/s/{invite}", expect=410)
    assert err["error"] == "LINK_REVOKED"
    view = await portal.call("GET", f"/api/s/{new_invite}")
    assert view["step"] == "consent"
    await portal.consent(new_invite)
    await portal.call("GET", f"/api/s/{new_invite}/documents/{doc}/download")
    assert restarted["inviteUrl"] in portal.store.mails(to="s1@example.test")[-1].body


@with_portal()
async def test_links_are_for_one_signer_and_expire(portal: RunningPortal) -> None:
    tx = await portal.create(expiresInDays=1)
    invite = portal.invite_path(tx, 0)
    body, mac = invite.split(".")
    for bad in (f"{body}.{mac[:-2]}AA", f"{body[:-3]}xyz.{mac}", "garbage", f"{body}."):
        err = await portal.call("GET", f"/api/s/{bad}", expect=403)
        assert err["error"] == "LINK_INVALID"
    # A Personal Space link made with the same key does not open an invitation.
    signer = LinkSigner.from_state(portal.config.state_dir)
    space = signer.make(Purpose.SPACE, tx["signers"][0]["id"], expires_at=2**40)
    await portal.call("GET", f"/api/s/{space}", expect=403)
    forged = LinkSigner(os.urandom(32)).make(Purpose.INVITE, tx["signers"][0]["id"],
                                             expires_at=2**40)
    await portal.call("GET", f"/api/s/{forged}", expect=403)
    # The second signer's link (made by the requester view later) is not the first's.
    expired = signer.make(Purpose.INVITE, tx["signers"][0]["id"], expires_at=1)
    err = await portal.call("GET", f"/api/s/{expired}", expect=410)
    assert err["error"] == "LINK_EXPIRED"
    portal.clock.advance(hours=23)
    assert (await portal.call("GET", f"/api/s/{invite}"))["step"] == "consent"
    assert await sweep_expired(portal.state) == []
    portal.clock.advance(hours=2)
    # The invitation expires with the transaction (on the portal's clock); the requester
    # is told by the sweep.
    err = await portal.call("GET", f"/api/s/{invite}", expect=410)
    assert err["error"] == "LINK_EXPIRED"
    [expired] = await sweep_expired(portal.state)
    assert expired.id == tx["id"] and expired.status.value == "expired"
    mail = portal.store.mails(to="agence@example.test")[-1]
    assert mail.subject == "Transaction expired: Lease agreement"


@with_portal()
async def test_refusal_closes_the_transaction_and_tells_the_requester(
        portal: RunningPortal) -> None:
    tx = await portal.create(sequential=False)
    second = portal.invite_path(tx, 1)
    await portal.consent(second)
    await portal.call("POST", f"/api/s/{second}/refuse", {"reason": ""}, expect=400)
    view = await portal.call("POST", f"/api/s/{second}/refuse",
                             {"reason": "The rent is wrong"})
    assert view["step"] == "refused" and view["signer"]["refusalReason"] == "The rent is wrong"
    after = await portal.call("GET", f"/api/v1/transactions/{tx['id']}", auth=True)
    assert after["status"] == "refused"
    assert after["signers"][1]["refusalReason"] == "The rent is wrong"
    mail = portal.store.mails(to="agence@example.test")[-1]
    assert "refused" in mail.subject and "The rent is wrong" in mail.body
    messages = await portal.call("GET", f"/api/v1/transactions/{tx['id']}/messages",
                                 auth=True)
    assert "The rent is wrong" in messages["messages"][-1]["text"]
    first = portal.invite_path(tx, 0)
    assert (await portal.call("GET", f"/api/s/{first}"))["step"] == "closed"
    err = await portal.call("POST", f"/api/s/{first}/accept", {}, expect=409)
    assert err["error"] == "TRANSACTION_CLOSED"


@with_portal()
async def test_messaging_both_ways_and_when_disabled(portal: RunningPortal) -> None:
    tx = await portal.create()
    invite = portal.invite_path(tx, 0)
    await portal.call("POST", f"/api/s/{invite}/messages", {"text": "Is page 2 right?"},
                      expect=201)
    await portal.call("POST", f"/api/v1/transactions/{tx['id']}/messages",
                      {"text": "Yes, it is."}, auth=True, expect=201)
    thread = await portal.call("GET", f"/api/s/{invite}/messages")
    assert [(m["author"], m["text"]) for m in thread["messages"]] == [
        ("signer", "Is page 2 right?"), ("requester", "Yes, it is.")]
    quiet = await portal.create(messaging=False)
    err = await portal.call("POST", f"/api/s/{portal.invite_path(quiet, 0)}/messages",
                            {"text": "hello"}, expect=403)
    assert err["error"] == "MESSAGING_DISABLED"


@with_portal()
async def test_sms_otp_endpoints_bind_codes_to_hashes(portal: RunningPortal) -> None:
    await portal.create(signers=1, documents=1)
    hashes = [base64.b64encode(hashlib.sha256(b"doc").digest()).decode()]
    other = [base64.b64encode(hashlib.sha256(b"other").digest()).decode()]
    store = portal.store
    otp_id = store.new_otp_session(purpose="sign", subject="no-such-session",
                                   phone="+33612345670", hashes=hashes)
    # A session that names no signing session is refused (nothing is texted).
    err = await portal.call("POST", "/api/v1/sms-otp/send",
                            {"session": otp_id, "hashes": hashes}, agent=True, expect=404)
    assert err["error"] == "SESSION_UNKNOWN"
    # Directly on the OTP engine (the signing-session binding is tested with signing).
    otp = portal.state.otp
    with pytest.raises(PortalError, match="hashes"):
        otp.send(otp_id, other, "{code}")
    sent = otp.send(otp_id, hashes, "code {code}")
    assert sent.expires_in == 300
    code = re.search(r"\d{6}", portal.sms("+33612345670")[-1])
    assert code is not None
    wrong = "000000" if code.group() != "000000" else "111111"
    with pytest.raises(PortalError) as info:
        otp.verify(otp_id, wrong, hashes)
    assert info.value.code == "OTP_INVALID"
    assert info.value.extra["attemptsLeft"] == MAX_FAILURES - 1
    with pytest.raises(PortalError) as info:
        otp.verify(otp_id, code.group(), hashes)  # too soon after a failure
    assert info.value.code == "OTP_THROTTLED"
    portal.clock.advance(seconds=2)
    with pytest.raises(PortalError) as info:
        otp.verify(otp_id, code.group(), other)
    assert info.value.code == "HASHES_MISMATCH"
    assert otp.verify(otp_id, code.group(), hashes).id == otp_id
    with pytest.raises(PortalError) as info:
        otp.verify(otp_id, code.group(), hashes)
    assert info.value.code == "OTP_REPLAYED"


@with_portal()
async def test_security_headers_and_no_caching(portal: RunningPortal) -> None:
    tx = await portal.create(signers=1, documents=1)
    async with portal.session.get(portal.url + "/api/s/" + portal.invite_path(tx, 0)) as r:
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
    async with portal.session.get(portal.url + "/api/nothing/here") as r:
        assert r.status == 404 and (await r.json())["error"] == "NOT_FOUND"
    async with portal.session.get(portal.url + "/static/../service.py") as r:
        assert r.status == 404
