"""The portal killed in the middle of storing signed documents (`qsign portal serve` in
its own process, ended like kill -9 at a tear point): after a restart nothing is half
signed, no signed document is lost, and the signer can finish or sees it finished."""

from __future__ import annotations

import base64
import re
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from portal.agent_auth import new_agent_token
from portal.blobs import BlobStore
from portal.store import Store
from tests.support.pdfs import blank_pdf
from tests.support.portal_pki import PortalPki, start_pki
from tests.support.portal_process import TEAR_VARIABLE, PortalProcess


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[PortalPki]:
    running = start_pki(tmp_path / "ca")
    yield running
    running.stop()


class Portal(PortalProcess):
    """The portal trusting the test CA, with one agent credential for the SMS OTP routes."""

    def __init__(self, directory: Path, pki: PortalPki) -> None:
        (directory / "root.der").write_bytes(pki.root)
        self.agent_token, digest = new_agent_token()  # the SMS OTP routes' caller
        super().__init__(directory, {"trust_roots": [str(directory / "root.der")],
                                     "check_revocation": False,
                                     "agent_token_sha256": [digest]})

    def sms_otp(self, step: str, body: Any) -> tuple[int, Any]:
        return self.call("POST", f"/api/v1/sms-otp/{step}", body, bearer=self.agent_token)

    def store(self) -> Store:
        return Store.open(None, self.state)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("tear", ["complete:blobs-stored", "complete:committed"])
def test_crash_while_storing_signed_documents(tmp_path: Path, pki: PortalPki,
                                              tear: str) -> None:
    signer = pki.issue("p256")
    portal = Portal(tmp_path, pki)
    portal.start({TEAR_VARIABLE: tear})
    try:
        status, tx = portal.call("POST", "/api/v1/transactions", {
            "title": "Crash", "requester": {"name": "R", "email": "r@example.test"},
            "documents": [{"name": f"d{i}.pdf", "content": _b64(blank_pdf(i + 1))}
                          for i in range(2)],
            "signers": [{"name": "Alice Martin", "email": "s@example.test",
                         "phone": "+33611111111"}],  # as the certificate names her
            "level": "B-B"}, token=True)
        assert status == 201, tx
        invite = tx["signers"][0]["inviteUrl"].split("/s/")[1]
        _, view = portal.call("GET", f"/api/s/{invite}")
        portal.call("POST", f"/api/s/{invite}/consents", {"accepted": [
            {k: c[k] for k in ("kind", "version", "sha256")} for c in view["consents"]]})
        portal.call("POST", f"/api/s/{invite}/accept", {})
        status, prepared = portal.call("POST", f"/api/s/{invite}/sign/prepare", {
            "certificate": _b64(signer.certificate),
            "chain": [_b64(c) for c in signer.chain[:1]], "phoneConfirmed": True})
        assert status == 200, prepared
        otp = {"session": prepared["otpSession"], "hashes": prepared["hashes"]}
        assert portal.sms_otp("send", otp)[0] == 200
        store = portal.store()
        code = re.search(r"\d{6}", store.sms("+33611111111")[-1][1])
        store.close()
        assert code is not None
        status, verified = portal.sms_otp("verify", {**otp, "code": code.group()})
        assert status == 200, verified
        signatures = [_b64(signer.key.sign(base64.b64decode(h),  # type: ignore[union-attr]
                                           ec.ECDSA(Prehashed(hashes.SHA256()))))
                      for h in prepared["hashes"]]
        complete = {"sessionId": prepared["sessionId"], "signatures": signatures}
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            portal.call("POST", f"/api/s/{invite}/sign/complete", complete)
        assert portal.process is not None and portal.process.wait(10) == 137

        portal.start()  # no tear this time
        store = portal.store()
        after = store.transaction(tx["id"])
        if tear == "complete:blobs-stored":
            # Before the commit: nothing signed; the same session finishes now.
            assert after.signers[0].status.value == "accepted"
            assert all(len(d.versions) == 1 for d in after.documents)
            status, view = portal.call("POST", f"/api/s/{invite}/sign/complete", complete)
            assert status == 200 and view["step"] == "done", view
            after = store.transaction(tx["id"])
        else:
            # After the commit: signed, whatever the client saw; a retry is answered
            # "done" again and stores nothing twice.
            status, again = portal.call("POST", f"/api/s/{invite}/sign/complete", complete)
            assert status == 200 and again["step"] == "done", again
        assert after.signers[0].status.value == "signed"
        assert after.status.value == "completed"
        blobs = BlobStore(tmp_path / "state" / "documents")
        for document in after.documents:
            assert len(document.versions) == 2
            signed = blobs.get(document.current.sha256)  # hash checked on read
            assert signed.count(b"/ByteRange") == 1
        store.close()
    finally:
        portal.stop()
