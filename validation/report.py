"""What the validator answers: one report per signature (ETSI EN 319 102-1 §5.1.3
indications, TS 119 172-4 qualification) and one per file, as JSON for programs and as
the ETSI TS 119 102-2 XML validation report."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

# EN 319 102-1 §5.1.3 main indications.
TOTAL_PASSED = "TOTAL-PASSED"
TOTAL_FAILED = "TOTAL-FAILED"
INDETERMINATE = "INDETERMINATE"
# TS 119 172-4 §4.3 (and TS 119 615 §4.3) qualification of a signature.
QES = "QES"
ADES_QC = "AdES/QC"
ADES = "AdES"
NOT_ADES = "not AdES"
INDETERMINATE_PREFIX = "Indeterminate "  # e.g. "Indeterminate QES": not (yet) proven either way
# What the signature covers (pyHanko's coverage and later-modification levels, named).
ENTIRE_FILE = "ENTIRE_FILE"
ENTIRE_REVISION = "ENTIRE_REVISION"
PARTIAL = "PARTIAL"


@dataclass(frozen=True)
class TrustedListStatus:
    """One trusted list as this validation used it: `ok` False means it was not used."""

    source: str
    territory: str | None
    ok: bool
    problem: str | None = None
    next_update: dt.datetime | None = None  # TS 119 612 §5.3.15, as the signed list says
    via: str | None = None  # the list of trusted lists that pointed at it, if any

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "territory": self.territory, "ok": self.ok,
                "problem": self.problem,
                "nextUpdate": (self.next_update.astimezone(dt.UTC).isoformat()
                               .replace("+00:00", "Z") if self.next_update else None)}


@dataclass(frozen=True)
class SignatureReport:
    """One signature field's validation, in document order."""

    field: str
    indication: str
    sub_indication: str | None
    qualification: str
    qualification_reason: str | None
    signer: str | None
    signing_time: dt.datetime | None
    time_source: str  # "timestamp" | "claimed" | "none"
    coverage: str
    coverage_detail: str
    level: str  # "B-B" | "B-T" | "B-LT" | "B-LTA" (EN 319 142-1 §6), as found in the file

    @property
    def passed(self) -> bool:
        return self.indication == TOTAL_PASSED

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field, "indication": self.indication,
            "subIndication": self.sub_indication, "qualification": self.qualification,
            "qualificationReason": self.qualification_reason, "signer": self.signer,
            "signingTime": (self.signing_time.astimezone(dt.UTC).isoformat()
                            .replace("+00:00", "Z") if self.signing_time else None),
            "timeSource": self.time_source, "coverage": self.coverage,
            "coverageDetail": self.coverage_detail, "level": self.level,
        }


@dataclass(frozen=True)
class FileReport:
    """One file's validation: every signature, and the trusted lists it was judged by."""

    name: str
    sha256: str
    signatures: tuple[SignatureReport, ...]
    trusted_lists: tuple[TrustedListStatus, ...]
    # The TS 119 102-2 report, made with the pyHanko results it needs (validation/xml_report.py).
    xml: bytes = field(default=b"", repr=False, compare=False)

    @property
    def passed(self) -> bool:
        """Every signature TOTAL-PASSED, and there is at least one."""
        return bool(self.signatures) and all(s.passed for s in self.signatures)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.name, "sha256": self.sha256,
            "signatures": [s.to_json() for s in self.signatures],
            "trustedLists": [t.to_json() for t in self.trusted_lists],
        }
        if not self.signatures:
            out["note"] = "no signature"
        return out

    def to_xml(self) -> bytes:
        """The ETSI TS 119 102-2 validation report (one SignatureValidationReport per
        signature, with the validation objects they used)."""
        return self.xml

    def stored(self) -> dict[str, Any]:
        """The whole report as JSON data (every field, the XML report too), for a store
        that hands it back through `from_stored`: `to_json` is the API's shape."""
        return {"name": self.name, "sha256": self.sha256,
                "signatures": [_plain(s) for s in self.signatures],
                "trustedLists": [_plain(t) for t in self.trusted_lists],
                "xml": base64.b64encode(self.xml).decode()}

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> FileReport:
        return cls(data["name"], data["sha256"],
                   tuple(_typed(SignatureReport, s) for s in data["signatures"]),
                   tuple(_typed(TrustedListStatus, t) for t in data["trustedLists"]),
                   base64.b64decode(data["xml"]))


def _times(kind: type) -> frozenset[str]:
    """The fields of `kind` that hold a datetime (the others are str, bool or None)."""
    hints = typing.get_type_hints(kind)
    return frozenset(name for name, hint in hints.items()
                     if dt.datetime in (hint, *typing.get_args(hint)))


# A datetime is kept as its ISO form; which fields hold one is read from the classes.
_TIMES = {kind: _times(kind) for kind in (SignatureReport, TrustedListStatus)}


def _plain(report: SignatureReport | TrustedListStatus) -> dict[str, Any]:
    out = dataclasses.asdict(report)
    for name in _TIMES[type(report)]:
        out[name] = out[name].isoformat() if out[name] is not None else None
    return out


_R = TypeVar("_R", SignatureReport, TrustedListStatus)


def _typed(kind: type[_R], data: dict[str, Any]) -> _R:
    values = dict(data)
    for name in _TIMES[kind]:
        values[name] = dt.datetime.fromisoformat(values[name]) if values[name] else None
    return kind(**values)
