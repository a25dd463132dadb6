"""A requester's documents on their way in (portal/API.md, `POST /api/v1/transactions`):
the name (portal/document_names.py), the PDF itself (portal/render.py) and its active
content (portal/pdf_content.py) under the transaction's `activeContent` policy
(SECURITY.md #44, #45).

`"refuse"` (the default) refuses a document with active content: `PDF_ACTIVE_CONTENT`
(422) naming the document and what was found. `"warn"` accepts it and keeps what was
found, by the document's SHA-256, in the table `document_active_content`
(portal/migrations/); the signer's
view (`SignerView.documents[].activeContent`) then lists it and the page warns before the
signer accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ground.sql import Database
from portal import render
from portal.errors import Code, PortalError
from portal.pdf_content import ActiveContent, ActiveKind, PdfUnreadable, scan

_WORDS = {ActiveKind.JAVASCRIPT: "JavaScript", ActiveKind.OPEN_ACTION: "an opening action",
          ActiveKind.LAUNCH: "a Launch action",
          ActiveKind.ADDITIONAL_ACTIONS: "additional actions (/AA)",
          ActiveKind.EMBEDDED_FILES: "embedded files", ActiveKind.XFA: "an XFA form",
          ActiveKind.UNCHECKED: "more objects than can be checked"}


class ContentPolicy(StrEnum):
    REFUSE = "refuse"
    WARN = "warn"


def content_policy(body: dict[str, Any]) -> ContentPolicy:
    """The transaction's `activeContent` field; "refuse" when absent."""
    value = body.get("activeContent", ContentPolicy.REFUSE.value)
    try:
        return ContentPolicy(value)
    except ValueError:
        raise PortalError(Code.BAD_REQUEST, 'activeContent: "refuse" or "warn"') from None


@dataclass(frozen=True)
class Inspected:
    pages: int
    content: ActiveContent


def inspect(data: bytes, index: int, policy: ContentPolicy) -> Inspected:
    """Pages and active content of upload `documents[index]` under `policy`; blocking
    (PDFium and pyHanko): run it in a thread."""
    where = f"documents[{index}]"
    try:
        pages = render.inspect(data)
    except PortalError as exc:
        # `document` and `reason` let a page name the file and say why (API.md).
        raise PortalError(Code.PDF_INVALID, f"{where}: {exc}", document=index,
                          reason=exc.extra.get("reason", "unreadable")) from None
    try:
        content = scan(data)
    except PdfUnreadable as exc:
        raise PortalError(Code.PDF_INVALID, f"{where}: {exc}", document=index,
                          reason="unreadable") from None
    if content and policy is ContentPolicy.REFUSE:
        raise PortalError(
            Code.PDF_ACTIVE_CONTENT,
            f"{where}: the PDF holds {', '.join(_WORDS[k] for k in content.kinds)}",
            document=index, found=[k.value for k in content.kinds],
            where=[f"{f.kind.value}: {f.where}" for f in content.findings])
    return Inspected(pages, content)


def record(db: Database, sha256: str, content: ActiveContent) -> None:
    """Keep what was found in the document `sha256` (nothing when nothing was)."""
    if not content:
        return
    findings = json.dumps([[f.kind.value, f.where] for f in content.findings])
    kinds = json.dumps([k.value for k in content.kinds])
    with db.transaction() as cur:  # same bytes, same findings: the first stays
        cur.execute("INSERT INTO document_active_content (sha256, kinds, findings) "
                    "VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                    (sha256, kinds, findings))


def kinds_of(db: Database, digests: Iterable[str]) -> dict[str, list[str]]:
    """The active content kinds kept for each of `digests` (absent: none)."""
    wanted = sorted(set(digests))
    if not wanted:
        return {}
    found: dict[str, list[str]] = {}
    with db.transaction() as cur:
        for sha in wanted:  # a transaction holds at most 20 documents
            cur.execute("SELECT kinds FROM document_active_content WHERE sha256 = ?", (sha,))
            row = cur.fetchone()
            if row is not None:
                found[sha] = json.loads(row[0])
    return found
