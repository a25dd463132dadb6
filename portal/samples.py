"""Sample documents for the demo and for testers: a plain PDF 1.7 with text pages in
Helvetica (a standard font: nothing embedded), written object by object with a correct
cross-reference table, so PDF readers and pyHanko's incremental writer accept it."""

from __future__ import annotations


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(title: str, paragraphs: list[str], *, pages: int = 1) -> bytes:
    """A4 pages: the title on each, then the paragraphs (ASCII/Latin-1 text)."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled below, once the page tree's number is known
    tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
               b"/Encoding /WinAnsiEncoding >>")
    kids = []
    for number in range(1, pages + 1):
        lines = [f"BT /F1 18 Tf 56 780 Td ({_escape(title)}) Tj ET"]
        y = 740
        for paragraph in paragraphs:
            for line in _wrap(paragraph, 90):
                lines.append(f"BT /F1 11 Tf 56 {y} Td ({_escape(line)}) Tj ET")
                y -= 16
            y -= 10
        lines.append(f"BT /F1 9 Tf 56 40 Td (Page {number} / {pages}) Tj ET")
        stream = "\n".join(lines).encode("latin-1", errors="replace")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream
                      + b"\nendstream")
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] "
                        b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                        % (tree, font, content)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = (b"<< /Type /Pages /Count %d /Kids [%s] >>"
                         % (len(kids), b" ".join(b"%d 0 R" % k for k in kids)))
    return pdf_file(objects)


def pdf_file(objects: list[bytes]) -> bytes:
    """A PDF 1.7 file of `objects` (object i+1 is objects[i], object 1 the catalog), with
    its classic cross-reference table and trailer (ISO 32000-1 §7.5)."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    return bytes(out)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
