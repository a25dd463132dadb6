"""Validation of PAdES signatures (ETSI EN 319 102-1) and their qualified status from
trusted lists (ETSI TS 119 612, TS 119 615, TS 119 172-4), on pyHanko's validators.
Imports only `ground`; the portal, the CA and the `qsign` command import this."""

from validation.engine import validate_pdf
from validation.errors import TrustedListConfigError, ValidationError
from validation.report import FileReport, SignatureReport, TrustedListStatus
from validation.trusted_lists import ValidationSettings

__all__ = ["FileReport", "SignatureReport", "TrustedListConfigError", "TrustedListStatus",
           "ValidationError", "ValidationSettings", "validate_pdf"]
