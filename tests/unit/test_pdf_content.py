"""portal/pdf_content.py on its own: the walk's bounds, what is and is not active content,
and documents pyHanko cannot read."""

from __future__ import annotations

import pytest

from portal.pdf_content import ActiveKind, PdfUnreadable, scan
from tests.support.active_pdfs import (
    additional_actions_on_page,
    goto_open_action,
    hand_written,
    javascript_in_object_stream,
)
from tests.support.pdfs import blank_pdf

PAGES = [b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
         b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> >>"]


def _kinds(data: bytes, **bounds: int) -> set[str]:
    return {k.value for k in scan(data, **bounds).kinds}


def test_plain_documents_and_page_openings_are_not_active() -> None:
    assert not scan(blank_pdf(3))
    assert not scan(goto_open_action())
    lone_goto = hand_written([b"<< /Type /Catalog /Pages 2 0 R /OpenAction "
                              b"<< /S /GoTo /D [3 0 R /Fit] >> >>", *PAGES])
    assert not scan(lone_goto)


def test_a_goto_that_chains_javascript_is_reported() -> None:
    chained = hand_written([
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction << /S /GoTo /D [3 0 R /Fit] "
        b"/Next 4 0 R >> >>", *PAGES, b"<< /S /JavaScript /JS 5 0 R >>",
        b"<< /Length 13 >>\nstream\napp.alert(1);\nendstream"])
    assert _kinds(chained) == {"javascript", "open-action"}


def test_the_javascript_name_tree_and_xfa_in_nested_direct_objects() -> None:
    names = hand_written([
        b"<< /Type /Catalog /Pages 2 0 R /Names << /JavaScript << /Names [(a) 4 0 R] >> >>"
        b" /AcroForm << /Fields [] /NeedAppearances true /XFA [(template) 5 0 R] >> >>",
        *PAGES, b"<< /S /JavaScript /JS (this.print\\(\\)) >>",
        b"<< /Length 2 >>\nstream\n<>\nendstream"])
    assert _kinds(names) == {"javascript", "xfa"}


def test_the_walk_is_bounded_and_says_so() -> None:
    data = javascript_in_object_stream()
    assert _kinds(data) == {"javascript", "open-action"}
    assert ActiveKind.UNCHECKED in scan(data, max_objects=1).kinds
    assert ActiveKind.UNCHECKED in scan(additional_actions_on_page(), max_values=3).kinds
    # Thousands of nested direct arrays in the catalog.
    deep = b"[" * 20_000 + b"]" * 20_000
    nested = hand_written([b"<< /Type /Catalog /Pages 2 0 R /Deep " + deep + b" >>", *PAGES])
    # pyHanko's parser gives up on that object (RecursionError): it is unchecked.
    assert _kinds(nested) == {"unchecked"}


def test_what_cannot_be_read_is_unreadable() -> None:
    for data in (b"not a pdf", b"%PDF-1.7\n" + b"\0" * 100, blank_pdf(1, encrypt_with="pw")):
        with pytest.raises(PdfUnreadable):
            scan(data)
