"""PDFs with active content, built with real structures (ISO 32000-1): pyHanko's writer
for most, hand-written objects where the bytes themselves matter (an escaped name).
Each opens in PDFium and shows one blank A4 page, like tests/support/pdfs.blank_pdf."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PdfFileWriter

from portal.samples import pdf_file

N = generic.NameObject


def _dict(**entries: generic.PdfObject) -> generic.DictionaryObject:
    return generic.DictionaryObject({N(f"/{k}"): v for k, v in entries.items()})


def _text(value: str) -> generic.TextStringObject:
    return generic.TextStringObject(value)


def _writer() -> tuple[PdfFileWriter, generic.DictionaryObject]:
    writer = PdfFileWriter()
    contents = writer.add_object(generic.StreamObject(stream_data=b"BT ET"))
    page = _dict(Type=N("/Page"), MediaBox=generic.ArrayObject(
        [generic.NumberObject(n) for n in (0, 0, 595, 842)]),
        Resources=generic.DictionaryObject(), Contents=contents)
    writer.insert_page(page)
    return writer, page


def _bytes(writer: PdfFileWriter) -> bytes:
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _page_ref(writer: PdfFileWriter) -> generic.IndirectObject:
    kids = writer.root["/Pages"]["/Kids"]
    ref: generic.IndirectObject = kids.raw_get(0)
    return ref


def _annotate(writer: PdfFileWriter, page: generic.DictionaryObject, subtype: str,
              rect: tuple[int, int, int, int], **entries: generic.PdfObject) -> None:
    """The page's one annotation (ISO 32000-1 §12.5.2), of `subtype` at `rect`."""
    page[N("/Annots")] = generic.ArrayObject([writer.add_object(_dict(
        Type=N("/Annot"), Subtype=N(subtype),
        Rect=generic.ArrayObject([generic.NumberObject(n) for n in rect]), **entries))])


def _embedded_file_spec(writer: PdfFileWriter) -> generic.IndirectObject:
    stream = generic.StreamObject(_dict(Type=N("/EmbeddedFile")),
                                  stream_data=b"MZ not really a program")
    return writer.add_object(_dict(Type=N("/Filespec"), F=_text("invoice.exe"),
                                   UF=_text("invoice.exe"),
                                   EF=_dict(F=writer.add_object(stream))))


def goto_open_action() -> bytes:
    """No active content: the document opens on its first page, fitted (a destination)."""
    writer, _ = _writer()
    writer.root[N("/OpenAction")] = generic.ArrayObject([_page_ref(writer), N("/Fit")])
    return _bytes(writer)


def javascript_in_object_stream() -> bytes:
    """/OpenAction points at a JavaScript action stored compressed in an object stream
    (ISO 32000-1 §7.5.7): the file's bytes show neither "JavaScript" nor "/JS"."""
    writer, _ = _writer()
    objects = writer.prepare_object_stream()
    action = writer.add_object(_dict(S=N("/JavaScript"), JS=_text("app.alert('hi')")),
                               obj_stream=objects)
    writer.root[N("/OpenAction")] = action
    return _bytes(writer)


def additional_actions_on_page() -> bytes:
    """The page's /AA opens a web address when the page is shown (no JavaScript)."""
    writer, page = _writer()
    page[N("/AA")] = _dict(O=_dict(S=N("/URI"), URI=generic.ByteStringObject(
        b"https://tracker.example.test/opened")))
    return _bytes(writer)


def launch_link() -> bytes:
    """A link annotation whose action launches a program."""
    writer, page = _writer()
    _annotate(writer, page, "/Link", (0, 0, 595, 842),
              A=_dict(S=N("/Launch"), F=_text("calc.exe")))
    return _bytes(writer)


def embedded_files() -> bytes:
    """The document's /EmbeddedFiles name tree holds a file."""
    writer, _ = _writer()
    writer.root[N("/Names")] = _dict(EmbeddedFiles=_dict(Names=generic.ArrayObject(
        [_text("invoice.exe"), _embedded_file_spec(writer)])))
    return _bytes(writer)


def file_attachment_annotation() -> bytes:
    """A file attachment annotation on the page."""
    writer, page = _writer()
    _annotate(writer, page, "/FileAttachment", (10, 10, 30, 30), FS=_embedded_file_spec(writer))
    return _bytes(writer)


def xfa_form() -> bytes:
    """An AcroForm carrying an XFA form (its own layout, drawn instead of the pages)."""
    writer, _ = _writer()
    xfa = writer.add_object(generic.StreamObject(
        stream_data=b"<xdp:xdp xmlns:xdp='http://ns.adobe.com/xdp/'></xdp:xdp>"))
    writer.root[N("/AcroForm")] = _dict(Fields=generic.ArrayObject(), XFA=xfa)
    return _bytes(writer)


def hand_written(objects: list[bytes]) -> bytes:
    """A PDF of `objects` (object i+1 is objects[i]; 1 must be the catalog), with a
    classic cross-reference table computed here."""
    return pdf_file(objects)


def escaped_javascript_name() -> bytes:
    """Hand-written: `/S /Java#53cript` and `/J#53` (ISO 32000-1 §7.3.5 name escapes)
    for /JavaScript and /JS, so a byte search for them finds nothing."""
    return hand_written([
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> >>",
        b"<< /S /Java#53cript /J#53 (app.alert\\(1\\)) >>",
    ])


ACTIVE: dict[str, tuple[Callable[[], bytes], set[str]]] = {
    "javascript-in-object-stream": (javascript_in_object_stream,
                                    {"javascript", "open-action"}),
    "escaped-javascript-name": (escaped_javascript_name, {"javascript", "open-action"}),
    "additional-actions-on-page": (additional_actions_on_page, {"additional-actions"}),
    "launch-link": (launch_link, {"launch"}),
    "embedded-files": (embedded_files, {"embedded-files"}),
    "file-attachment-annotation": (file_attachment_annotation, {"embedded-files"}),
    "xfa-form": (xfa_form, {"xfa"}),
}
