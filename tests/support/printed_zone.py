"""The printed-zone check on document numbers alone, for tests: the one MRZ reading
whose number the printed words show (portal.identity.printed.candidates), several
readings of it being no answer here (cross_check tells them apart by names and dates)."""

from __future__ import annotations

from portal.identity.model import IdentityError
from portal.identity.mrz import Mrz
from portal.identity.printed import candidates


def confirmed(readings: tuple[Mrz, ...], printed: tuple[str, ...]) -> Mrz:
    found = candidates(readings, printed)
    if len(found) > 1:
        raise IdentityError("PRINTED_UNREADABLE", "several readings of the printed number",
                            field="document_number")
    return found[0]
