"""PDFs made here for tests that must run anywhere (a clean clone has no ../shared).

The third-party corpus (tests/corpus/pdf, a copy of ../shared/corpus/pdf) is for robustness sweeps;
the signing tests use these: one or more blank A4 pages, optionally AES-256 encrypted.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PdfFileWriter


def blank_pdf(pages: int = 1, *, encrypt_with: str | None = None) -> bytes:
    writer = PdfFileWriter()
    for _ in range(pages):
        contents = writer.add_object(generic.StreamObject(stream_data=b"BT ET"))
        writer.insert_page(generic.DictionaryObject({
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(n) for n in (0, 0, 595, 842)]),
            generic.NameObject("/Resources"): generic.DictionaryObject(),
            generic.NameObject("/Contents"): contents,
        }))
    if encrypt_with is not None:
        writer.encrypt(encrypt_with, encrypt_with)  # AES-256 (the StandardSecurityHandler default)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def write_samples(directory: Path) -> dict[str, Path]:
    """minimal.pdf, minimal-two-pages.pdf and minimal-aes256.pdf in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    samples = {"minimal.pdf": blank_pdf(1), "minimal-two-pages.pdf": blank_pdf(2),
               "minimal-aes256.pdf": blank_pdf(1, encrypt_with="secret")}
    paths = {}
    for name, data in samples.items():
        paths[name] = directory / name
        paths[name].write_bytes(data)
    return paths
