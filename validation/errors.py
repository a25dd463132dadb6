"""The validation package's typed errors: input the validator refuses, and trusted-list
configuration it cannot use."""

from __future__ import annotations

import zlib

from pyhanko.pdf_utils.misc import PdfError

# What pyHanko's PDF reader raises on a broken file: its own errors, the builtins its
# parser lets through on hostile structures, zlib's on a corrupt stream, and
# AssertionError (its xref reader asserts /Type /XRef), ArithmeticError (decimal's
# InvalidOperation on a malformed real number such as 1.2.3). Every reader of strangers'
# PDFs (the validator, the portal's intake) catches these.
PDF_READER_ERRORS: tuple[type[Exception], ...] = (
    PdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
    NotImplementedError, zlib.error, AssertionError, ArithmeticError)


class ValidationError(Exception):
    """The input is no PDF the validator can read. `code` is one of CODES, for the
    callers' wire mapping (the portal's and the CLI's)."""

    CODES = frozenset({"NOT_A_PDF", "MALFORMED_PDF", "TOO_LARGE", "ENCRYPTED_PDF"})

    def __init__(self, code: str, message: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown validation error code {code!r}")
        super().__init__(message)
        self.code = code


class TrustedListConfigError(Exception):
    """A trusted-list source or scheme-operator certificate that cannot even be read
    (a missing file, a certificate that is no certificate). A list that is read but
    fails its signature check is not an error: its TrustedListStatus says so."""
