"""The ETSI TS 119 102-2 validation report of a file: pyHanko's per-signature
SignatureValidationReport (report/tools.py), gathered into one ValidationReport with the
validation objects of all signatures once each (pyHanko writes one signature per report)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyhanko.generated.etsi import ts_11910202
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.validation.ades import AdESLTAValidationResult
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.report import tools

if TYPE_CHECKING:
    from validation.report import SignatureReport

log = logging.getLogger(__name__)
# TS 119 102-2 §4.3.7 (the URIs pyHanko's report/tools.py writes too).
MAIN_INDICATIONS = {"TOTAL-PASSED": "urn:etsi:019102:mainindication:total-passed",
                    "TOTAL-FAILED": "urn:etsi:019102:mainindication:total-failed",
                    "INDETERMINATE": "urn:etsi:019102:mainindication:indeterminate"}
QUALITY_URN = "urn:qsign:validation:qualification:"  # + QES, AdES-QC, AdES, not-AdES, ...


@dataclass(frozen=True)
class Validated:
    signature: EmbeddedPdfSignature
    result: AdESLTAValidationResult | None  # None: pyHanko could not process it
    report: SignatureReport


def _quality(report: SignatureReport) -> ts_11910202.SignatureQualityType:
    """TS 119 102-2 §4.3.5.7 SignatureQuality: the TS 119 172-4 qualification, as a URI
    under the project's URN (the report's URI list is left to the validation policy)."""
    name = report.qualification.replace(" ", "-").replace("/", "-")
    return ts_11910202.SignatureQualityType((f"{QUALITY_URN}{name}",))


def _minimal(report: SignatureReport) -> ts_11910202.SignatureValidationReportType:
    """TS 119 102-2 §4.3: SignatureValidationStatus is the one element a report needs."""
    sub = (f"urn:etsi:019102:subindication:{report.sub_indication}",
           ) if report.sub_indication else ()
    return ts_11910202.SignatureValidationReportType(
        signature_quality=_quality(report),
        signature_validation_status=ts_11910202.ValidationStatusType(
            main_indication=MAIN_INDICATIONS[report.indication], sub_indication=sub))


def xml_report(validated: list[Validated]) -> bytes:
    """TS 119 102-2 §4 ValidationReport: one SignatureValidationReport per signature
    pyHanko processed, then SignatureValidationObjects."""
    reports = []
    objects: dict[str | None, ts_11910202.ValidationObjectType] = {}
    for item in validated:
        try:
            if item.result is None or item.result.api_status is None:
                raise ValueError("no validation result to describe")
            reports.append(dataclasses.replace(
                tools._generate_report(item.signature, item.result),
                signature_quality=_quality(item.report)))
        except (ValueError, KeyError, TypeError, NotImplementedError, PdfError) as exc:
            # pyHanko describes only signatures it could take apart (no shake256 digest
            # URI, no report without signed attributes, no damaged /M date): the
            # indication still goes in.
            log.info("signature %s: minimal TS 119 102-2 report (%s)", item.report.field, exc)
            reports.append(_minimal(item.report))
            continue
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
