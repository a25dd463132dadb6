"""Active content in a PDF: what can make a viewer show or do something other than the
pages the signer read (SECURITY.md #45; ISO 32000-1 §12.6 actions, §7.11.4 embedded
files, §12.7.8 XFA; ETSI TS 102 778 / PAdES asks the signer to see what they sign).

`scan(pdf)` looks at every object of the document, those in object streams (§7.5.7)
included, through pyHanko's reader, and reports (`ActiveContent`):

- `javascript`: a JavaScript action (`/S /JavaScript`, a `/JS` entry) or the document's
  JavaScript name tree (`/Names` → `/JavaScript`);
- `open-action`: a document `/OpenAction` that is an action (a plain `/GoTo` or a bare
  destination only opens a page, and is not reported);
- `launch`: a Launch action (runs a program or opens a file);
- `additional-actions`: an `/AA` dictionary (document, page, annotation or field
  triggers: on open, close, print, focus...);
- `embedded-files`: the `/EmbeddedFiles` name tree, file attachment annotations,
  embedded file streams or file specifications carrying one (`/EF`), `/GoToE` actions;
- `xfa`: an XFA form (`/AcroForm` → `/XFA`), which draws its own pages;
- `unchecked`: the scan stopped at its bounds (objects, values) before the end, or an
  object pyHanko cannot read (a viewer that repairs it might still run it).

References are not followed (every indirect object is visited once, by number), so the
walk is iterative and bounded whatever the object graph; names are compared after
pyHanko's `#xx` decoding (`/Java#53cript` is `/JavaScript`).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from enum import StrEnum

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.reader import PdfFileReader

from validation.errors import PDF_READER_ERRORS

log = logging.getLogger(__name__)

MAX_OBJECTS = 500_000
MAX_VALUES = 5_000_000  # dictionary entries and array items looked at, in all
MAX_FINDINGS = 20  # locations kept (every kind found is always reported)


class ActiveKind(StrEnum):
    JAVASCRIPT = "javascript"
    OPEN_ACTION = "open-action"
    LAUNCH = "launch"
    ADDITIONAL_ACTIONS = "additional-actions"
    EMBEDDED_FILES = "embedded-files"
    XFA = "xfa"
    UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Finding:
    kind: ActiveKind
    where: str  # "object 12 0", "trailer"


@dataclass(frozen=True)
class ActiveContent:
    """What `scan` found; empty when the document has no active content."""

    findings: tuple[Finding, ...] = ()
    kinds: tuple[ActiveKind, ...] = ()
    objects: int = 0

    def __bool__(self) -> bool:
        return bool(self.kinds)


class PdfUnreadable(Exception):
    """pyHanko cannot read the document (so it could not be signed either)."""


_ACTION_KINDS = {"/JavaScript": ActiveKind.JAVASCRIPT, "/Launch": ActiveKind.LAUNCH,
                 "/GoToE": ActiveKind.EMBEDDED_FILES}
_KEY_KINDS = {"/JS": ActiveKind.JAVASCRIPT, "/JavaScript": ActiveKind.JAVASCRIPT,
              "/AA": ActiveKind.ADDITIONAL_ACTIONS, "/EmbeddedFiles": ActiveKind.EMBEDDED_FILES,
              "/EF": ActiveKind.EMBEDDED_FILES, "/XFA": ActiveKind.XFA}


def _name(value: generic.PdfObject | None) -> str | None:
    return str(value) if isinstance(value, generic.NameObject) else None


def _only_opens_a_page(value: generic.PdfObject) -> bool:
    """An /OpenAction that is a destination (§12.3.2) or a lone GoTo action."""
    try:
        target = value.get_object()  # type: ignore[no-untyped-call]
    except PDF_READER_ERRORS:
        return False
    if isinstance(target, generic.ArrayObject | generic.NameObject | generic.TextStringObject
                  | generic.ByteStringObject):
        return True
    return (isinstance(target, generic.DictionaryObject)
            and _name(_raw(target, "/S")) == "/GoTo" and "/Next" not in target)


def _raw(dictionary: generic.DictionaryObject, key: str) -> generic.PdfObject | None:
    try:
        value: generic.PdfObject = dictionary.raw_get(key)
    except KeyError:
        return None
    return value


class _Walk:
    def __init__(self, max_values: int) -> None:
        self.budget = max_values
        self.found: dict[ActiveKind, list[str]] = {}

    def report(self, kind: ActiveKind, where: str) -> None:
        places = self.found.setdefault(kind, [])
        if where not in places[-1:]:
            places.append(where)

    def visit(self, root: generic.PdfObject, where: str) -> bool:
        """Look at `root` and the direct objects inside it; False once out of budget."""
        stack = [root]
        while stack:
            obj = stack.pop()
            if isinstance(obj, generic.DictionaryObject):
                self.budget -= len(obj)
                self.dictionary(obj, where)
                children = [_raw(obj, key) for key in list(obj.keys())]
            elif isinstance(obj, generic.ArrayObject):
                self.budget -= len(obj)
                children = [obj.raw_get(i) for i in range(len(obj))]
            else:
                continue
            if self.budget < 0:
                return False
            stack.extend(c for c in children
                         if isinstance(c, generic.DictionaryObject | generic.ArrayObject))
        return True

    def dictionary(self, obj: generic.DictionaryObject, where: str) -> None:
        for key, kind in _KEY_KINDS.items():
            if key in obj:
                self.report(kind, where)
        action = _ACTION_KINDS.get(_name(_raw(obj, "/S")) or "")
        if action is not None:
            self.report(action, where)
        if _name(_raw(obj, "/Subtype")) == "/FileAttachment" \
                or _name(_raw(obj, "/Type")) == "/EmbeddedFile":
            self.report(ActiveKind.EMBEDDED_FILES, where)
        opening = _raw(obj, "/OpenAction")
        if opening is not None and not _only_opens_a_page(opening):
            self.report(ActiveKind.OPEN_ACTION, where)


def _reader(data: bytes) -> PdfFileReader:
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted and reader.decrypt("").status is AuthStatus.FAILED:
            raise PdfUnreadable("the document is encrypted with a password")
    except PDF_READER_ERRORS as exc:
        raise PdfUnreadable(f"the PDF cannot be read: {type(exc).__name__}") from None
    return reader


def scan(data: bytes, *, max_objects: int = MAX_OBJECTS, max_values: int = MAX_VALUES
         ) -> ActiveContent:
    """The active content of the PDF `data` (this module's docstring), or PdfUnreadable.
    Work is bounded by `max_objects` objects and `max_values` values looked at."""
    reader = _reader(data)
    walk = _Walk(max_values)
    try:  # the trailer and the xref sections are read lazily, on a file pyHanko opened
        complete = walk.visit(reader.trailer, "trailer")
        refs: set[tuple[int, int]] = set()
        for revision in range(reader.xrefs.total_revisions):
            refs |= {(r.idnum, r.generation)
                     for r in reader.xrefs.explicit_refs_in_revision(revision)}
    except PDF_READER_ERRORS as exc:
        raise PdfUnreadable(f"the PDF cannot be read: {type(exc).__name__}") from None
    visited = 0
    for idnum, generation in sorted(refs):
        if not complete or visited >= max_objects:
            complete = False
            break
        where = f"object {idnum} {generation}"
        visited += 1
        try:
            obj = reader.get_object(  # type: ignore[no-untyped-call]
                generic.Reference(idnum, generation, reader))
        except PDF_READER_ERRORS as exc:
            # A viewer that repairs what pyHanko cannot read could still run it.
            log.info("PDF %s unreadable: %s", where, type(exc).__name__)
            walk.report(ActiveKind.UNCHECKED, where)
            continue
        try:
            complete = walk.visit(obj, where)
        except PDF_READER_ERRORS as exc:
            log.info("PDF %s unreadable: %s", where, type(exc).__name__)
            walk.report(ActiveKind.UNCHECKED, where)
    if not complete:
        walk.report(ActiveKind.UNCHECKED, f"after {visited} objects")
    kinds = tuple(k for k in ActiveKind if k in walk.found)
    findings = tuple(Finding(k, where) for k in kinds for where in walk.found[k])
    return ActiveContent(findings=findings[:MAX_FINDINGS], kinds=kinds, objects=visited)
