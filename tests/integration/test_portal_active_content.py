"""SECURITY.md #45 through the requester's real HTTP API: PDFs with JavaScript (hidden
in an object stream, or behind escaped names), an opening action, a Launch action, an
/AA on a page, embedded files or an XFA form are refused by default with
PDF_ACTIVE_CONTENT naming what was found; with `"activeContent": "warn"` they are
accepted and the signer's view lists, per document, what they hold."""

from __future__ import annotations

import base64
from typing import Any

from tests.support.active_pdfs import ACTIVE, goto_open_action
from tests.support.pdfs import blank_pdf
from tests.support.portal_service import RunningPortal, with_portal


def _transaction(documents: list[tuple[str, bytes]], **extra: Any) -> dict[str, Any]:
    return {"title": "Active content", "level": "B-B",
            "requester": {"name": "Agence", "email": "agence@example.test"},
            "documents": [{"name": name, "content": base64.b64encode(data).decode()}
                          for name, data in documents],
            "signers": [{"name": "Sam Signer", "email": "sam@example.test"}], **extra}


@with_portal()
async def test_active_content_is_refused_by_default(portal: RunningPortal) -> None:
    for name, (build, kinds) in ACTIVE.items():
        body = _transaction([("clean.pdf", blank_pdf()), (f"{name}.pdf", build())])
        answer = await portal.call("POST", "/api/v1/transactions", body, auth=True,
                                   expect=422)
        assert answer["error"] == "PDF_ACTIVE_CONTENT", (name, answer)
        assert answer["document"] == 1 and set(answer["found"]) == kinds, (name, answer)
        assert answer["message"].startswith("documents[1]: "), answer
        assert answer["where"], answer
    refused = _transaction([("x.pdf", ACTIVE["launch-link"][0]())], activeContent="refuse")
    answer = await portal.call("POST", "/api/v1/transactions", refused, auth=True, expect=422)
    assert answer["found"] == ["launch"], answer
    bad = _transaction([("x.pdf", blank_pdf())], activeContent="allow")
    answer = await portal.call("POST", "/api/v1/transactions", bad, auth=True, expect=400)
    assert "activeContent" in answer["message"], answer
    listed = await portal.call("GET", "/api/v1/transactions", auth=True)
    assert listed["transactions"] == [], listed  # nothing was stored
    # Opening on the first page is navigation, not active content.
    await portal.call("POST", "/api/v1/transactions", _transaction(
        [("opens-on-page-1.pdf", goto_open_action())]), auth=True, expect=201)


@with_portal()
async def test_warn_keeps_the_findings_for_the_signer(portal: RunningPortal) -> None:
    documents = [("clean.pdf", blank_pdf())]
    documents += [(f"{name}.pdf", build()) for name, (build, _) in ACTIVE.items()]
    tx = await portal.call("POST", "/api/v1/transactions",
                           _transaction(documents, activeContent="warn"), auth=True,
                           expect=201)
    invite = portal.invite_path(tx, 0)
    view = await portal.consent(invite)
    found = {d["name"]: d["activeContent"] for d in view["documents"]}
    assert found.pop("clean.pdf") == []
    assert {name: set(kinds) for name, kinds in found.items()} == {
        f"{name}.pdf": kinds for name, (_, kinds) in ACTIVE.items()}
    # Every kind is listed in a fixed order, once.
    assert all(len(kinds) == len(set(kinds)) for kinds in found.values())
