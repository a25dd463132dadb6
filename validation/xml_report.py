"""The ETSI TS 119 102-2 validation report of a file: pyHanko's per-signature
SignatureValidationReport (report/tools.py), gathered into one ValidationReport with the
validation objects of all signatures once each (pyHanko writes one signature per report)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyhanko.generated.etsi import ts_11910202
from pyhanko.sign.validation.ades import AdESLTAValidationResult
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.report import tools

if TYPE_CHECKING:
    from validation.report import SignatureReport


@dataclass(frozen=True)
class Validated:
    signature: EmbeddedPdfSignature
    result: AdESLTAValidationResult | None  # None: pyHanko could not process it
    report: SignatureReport


def xml_report(validated: list[Validated]) -> bytes:
    """TS 119 102-2 §4 ValidationReport: one SignatureValidationReport per signature
    pyHanko processed, then SignatureValidationObjects."""
    reports = []
    objects: dict[str | None, ts_11910202.ValidationObjectType] = {}
    for item in validated:
        if item.result is None or item.result.api_status is None:
            continue
        reports.append(tools._generate_report(item.signature, item.result))
        for vo in item.result.validation_objects:
            packaged = tools._package_validation_object(vo)
            objects.setdefault(packaged.id, packaged)
    report = ts_11910202.ValidationReport(
        signature_validation_report=tuple(reports),
        signature_validation_objects=ts_11910202.ValidationObjectListType(
            tuple(objects.values())))
    from xsdata.formats.dataclass.serializers import XmlSerializer
    from xsdata.formats.dataclass.serializers.config import SerializerConfig

    text = XmlSerializer(config=SerializerConfig(indent="  ")).render(
        report, ns_map=tools.NAMESPACES)
    return text.encode("utf-8")
