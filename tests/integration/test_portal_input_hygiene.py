"""SECURITY.md #44 and #46 through the portal's real HTTP API on a loopback port: document
names with control or bidi characters are refused at upload (and NFC-normalised, at most
255 bytes); names stored before those rules never make `documents.zip` fail; a 50,000-deep
JSON body is a typed 400 on every JSON route, never a 500."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import pytest

from portal.store import NewDocument, NewSigner
from tests.support.pdfs import blank_pdf
from tests.support.portal_service import RunningPortal, running_portal, with_portal

BAD_NAMES = {
    "NUL": "\0\0\0.pdf", "CR LF": "lease.pdf\r\nBcc: x@evil.test", "ESC": "\x1b[31mred.pdf",
    "TAB": "a\tb.pdf", "DEL": "a\x7f.pdf", "RLO U+202E": "invoice\u202efdp.exe",
    "LRI U+2066": "a\u2066b.pdf", "RLM U+200F": "a\u200fb.pdf", "LRE U+202A": "\u202aa.pdf",
    "ALM U+061C": "a\u061cb.pdf", "line separator": "a\u2028b.pdf", "surrogate": "a\ud800.pdf",
    "256 bytes": "é" * 125 + "ab.pdf", "empty": "  ", "path": "../etc/passwd",
}


def _upload(name: Any, content: bytes | None = None) -> dict[str, Any]:
    return {"title": "Names", "requester": {"name": "Agence", "email": "agence@example.test"},
            "documents": [{"name": "fine.pdf",
                           "content": base64.b64encode(blank_pdf()).decode()},
                          {"name": name,
                           "content": base64.b64encode(content or blank_pdf(2)).decode()}],
            "signers": [{"email": "s@example.test"}], "level": "B-B"}


@with_portal()
async def test_document_names_are_checked_at_upload(portal: RunningPortal) -> None:
    for what, name in BAD_NAMES.items():
        answer = await portal.call("POST", "/api/v1/transactions", _upload(name), auth=True,
                                   expect=400)
        assert answer["error"] == "DOCUMENT_NAME_INVALID", (what, answer)
        assert answer["field"] == "documents[1].name", (what, answer)
    listed = await portal.call("GET", "/api/v1/transactions", auth=True)
    assert listed["transactions"] == [], listed  # nothing was stored
    # NFC: a decomposed "é" is stored composed; 255 bytes of UTF-8 is the most.
    decomposed = "Contrat e\u0301te\u0301.pdf"
    longest = "é" * 124 + "abc.pdf"
    assert len(longest.encode()) == 255
    for given, stored in ((decomposed, "Contrat été.pdf"), (longest, longest)):
        tx = await portal.call("POST", "/api/v1/transactions", _upload(given), auth=True,
                               expect=201)
        assert tx["documents"][1]["name"] == stored
        assert unicodedata.is_normalized("NFC", tx["documents"][1]["name"])


@with_portal()
async def test_the_zip_answers_for_names_stored_before_the_rules(portal: RunningPortal
                                                                 ) -> None:
    nul = "\0" if portal.store.db.dialect == "sqlite" else "\x01"  # PostgreSQL text: no NUL
    legacy = [nul * 4, nul * 4, "../../etc/passwd", "a\r\nb\x1b[0m.pdf",
              "invoice\u202efdp.exe", "é" * 300 + ".pdf", ".hidden.pdf"]
    pdf = blank_pdf()
    digest = await asyncio.to_thread(portal.state.blobs.put, pdf)
    tx = await asyncio.to_thread(  # rows as an older portal stored them, unchecked
        portal.store.create_transaction, title="Old", requester_name="Agence",
        requester_email="agence@example.test",
        documents=[NewDocument(name, digest, 1, 1) for name in legacy],
        signers=[NewSigner("Old Signer", "old@example.test", "", "en")], sequential=True,
        expires_in=dt.timedelta(days=3), qualified=False,
        messaging=False, level="B-B")
    invite = portal.invite_path(
        await portal.call("GET", f"/api/v1/transactions/{tx.id}", auth=True), 0)
    await portal.consent(invite)
    async with portal.session.get(f"{portal.url}/api/s/{invite}/documents.zip") as response:
        assert response.status == 200, await response.text()
        data = await response.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert archive.testzip() is None
        assert all(archive.read(n) == pdf for n in names)
    assert len(names) == len(set(names)) == len(legacy), names
    for name in names:
        assert name and "/" not in name and "\\" not in name and not name.startswith(".")
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name), repr(name)
        assert len(name.encode()) <= 255, name


DEEP = "[" * 50_000 + "]" * 50_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deeply_nested_json_is_a_400_on_every_json_route(tmp_path: Path, body: str) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal:
            scene = await portal.signer_at_documents()
            invite, identity = scene.invite, scene.identity
            routes = [("POST", "/api/v1/transactions", True),
                      ("POST", f"/api/v1/transactions/{scene.tx['id']}/messages", True)]
            routes += [("POST", f"/api/s/{invite}/{route}", False) for route in (
                "consents", "refuse", "messages", "certificates/check", "sign/prepare",
                "sign/complete", "enrolment/start", "enrolment/personal-data")]
            routes += [("POST", f"/api/me/{scene.space}/session", False),
                       ("PUT", f"/api/identity/sessions/{identity}/sides/front", False),
                       ("POST", f"/api/identity/sessions/{identity}/challenges/c1", False)]
            for method, path, auth in routes:
                headers = {"Content-Type": "application/json",
                           **(portal.auth() if auth else {})}
                async with portal.session.request(method, portal.url + path, data=body,
                                                  headers=headers) as response:
                    answer = await response.json()
                    assert response.status == 400, (path, response.status, answer)
                    assert answer["error"] == "BAD_REQUEST", (path, answer)
            view = await portal.call("GET", f"/api/s/{invite}")
            assert view["step"] == "documents"

    asyncio.run(main())
