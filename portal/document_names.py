"""Document names, as a requester gives them and as files carry them (SECURITY.md #44).

A name is shown to signers, written in e-mails and becomes a file name in downloads and
in `documents.zip`. At upload it is refused (`DOCUMENT_NAME_INVALID`, 400, naming the
field) when it holds a control character (Unicode category Cc: NUL, CR, LF, ESC...), a
lone surrogate, a line or paragraph separator, or a bidirectional formatting character
that reorders what the reader sees (U+061C, U+200E/F, U+202A-202E, U+2066-2069:
"invoice" U+202E "fdp.exe" shows as "invoiceexe.pdf", Unicode TR #9, CVE-2021-42574); it is
NFC-normalised (Unicode UAX #15) and at most 255 bytes of UTF-8 (a file name on ext4 and
most file systems). Names stored before these rules are made safe again on the way out
(`archive_name`), so the ZIP answer never fails on them.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
from collections.abc import Iterable
from typing import Any

from portal.errors import Code, PortalError

MAX_NAME_BYTES = 255
_BIDI_CONTROLS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                            *range(0x2066, 0x206A)})
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _forbidden(char: str) -> bool:
    return ord(char) in _BIDI_CONTROLS or unicodedata.category(char) in _BAD_CATEGORIES


def document_name(value: Any, field: str) -> str:
    """The name to store for the upload field `field`, or DOCUMENT_NAME_INVALID."""
    def refuse(why: str) -> PortalError:
        return PortalError(Code.DOCUMENT_NAME_INVALID, f"{field}: {why}", field=field)

    if not isinstance(value, str):
        raise refuse("a file name (a string)")
    bad = next((c for c in value if _forbidden(c)), None)
    if bad is not None:
        raise refuse(f"control or bidirectional character U+{ord(bad):04X} is not allowed")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise refuse("empty")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise refuse(f"at most {MAX_NAME_BYTES} bytes of UTF-8")
    if "/" in name or "\\" in name or name.startswith("."):
        raise refuse("a file name, without a path")
    return name


def _truncate(name: str, limit: int) -> str:
    """`name` cut to `limit` bytes of UTF-8 on a character boundary, keeping the suffix."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix.encode("utf-8")) > 16:
        stem, suffix = name, ""
    room = limit - len(suffix.encode("utf-8")) - (1 if suffix else 0)
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return f"{cut}.{suffix}" if suffix else cut


def archive_name(name: str, position: int) -> str:
    """A safe file name for the stored `name` of document `position` (0-based): whatever
    was stored, never empty, no path, no control or bidi character, <= 255 bytes."""
    cleaned = "".join("_" if _forbidden(c) or c in "/\\" else c
                      for c in unicodedata.normalize("NFC", name))
    cleaned = cleaned.strip().lstrip(".").strip()
    if not cleaned.strip("_"):
        cleaned = f"document-{position + 1}.pdf"
    return _truncate(cleaned, MAX_NAME_BYTES)


def zip_documents(documents: Iterable[tuple[str, int, bytes]]) -> bytes:
    """A ZIP of `(stored name, position, PDF bytes)`, each under a distinct safe name."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        seen: set[str] = set()
        for name, position, data in documents:
            entry = archive_name(name, position)
            if entry in seen:
                entry = _truncate(f"{position + 1}-{entry}", MAX_NAME_BYTES)
            seen.add(entry)
            archive.writestr(entry, data)
    return out.getvalue()
