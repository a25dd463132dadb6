"""PDF intake and page images. A document is accepted only if PDFium opens it without a
password and it has at least one page; pages are rendered to PNG for the signer's page
(the page shows images: no PDF plug-in needed, and no PDF JavaScript ever runs)."""

from __future__ import annotations

import io
import threading

import pypdfium2 as pdfium  # type: ignore[import-untyped]

from portal.errors import Code, PortalError

MAX_PAGES = 2000
MIN_WIDTH, MAX_WIDTH = 200, 2000
# PDFium is not thread-safe (pypdfium2 docs, "Thread incompatibility"): one at a time.
_PDFIUM = threading.Lock()


def inspect(data: bytes) -> int:
    """The page count of a PDF we can sign; PDF_INVALID otherwise."""
    if not data:
        raise PortalError(Code.PDF_INVALID, "the file is empty (0 bytes)", reason="empty")
    if not data.startswith(b"%PDF-"):
        raise PortalError(Code.PDF_INVALID, "not a PDF (no %PDF- header)", reason="not-pdf")
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise PortalError(Code.PDF_INVALID, f"PDF cannot be opened: {exc}",
                              reason="unreadable") from None
        try:
            pages = len(pdf)
        finally:
            pdf.close()
    if not 1 <= pages <= MAX_PAGES:
        raise PortalError(Code.PDF_INVALID, f"a PDF of 1 to {MAX_PAGES} pages",
                          reason="pages")
    return pages


def page_png(data: bytes, number: int, width: int) -> bytes:
    """Page `number` (1-based) at `width` pixels, as PNG."""
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise PortalError(Code.BAD_REQUEST, f"width: {MIN_WIDTH} to {MAX_WIDTH} pixels")
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise PortalError(Code.PDF_INVALID, str(exc)) from None
        try:
            if not 1 <= number <= len(pdf):
                raise PortalError(Code.NOT_FOUND, "no such page")
            page = pdf[number - 1]
            try:
                scale = width / page.get_width()
                image = page.render(scale=scale, may_draw_forms=True).to_pil()
            finally:
                page.close()
        finally:
            pdf.close()
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
