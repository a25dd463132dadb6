"""validate_pdf: every signature of a PDF through pyHanko's ETSI EN 319 102-1 processes
(§5.6.3, validation with long-term data: the DSS, the signature timestamp, the document
timestamps as evidence record, past signature validation), then its qualification
(validation/qualification.py) and what it covers.

What pyHanko lacked and is added here: one call for a whole file with typed errors for
input that is no PDF, a trust manager fed by every listed service whatever its status,
the PAdES level found in the file, and the report's vocabulary."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
from io import BytesIO

from asn1crypto import cms, x509
from pyhanko.pdf_utils.crypt import AuthStatus, StandardSecurityHandler
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import (
    AdESFailure,
    AdESIndeterminate,
    AdESPassed,
    AdESStatus,
    AdESSubIndic,
)
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation.ades import AdESLTAValidationResult, ades_lta_validation
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import (
    CertificateFetchingRule,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    FreshnessReqType,
    RevocationCheckingPolicy,
)
from pyhanko_certvalidator.registry import SimpleTrustManager

from validation.errors import PDF_READER_ERRORS, ValidationError
from validation.qualification import qualify
from validation.report import (
    ENTIRE_FILE,
    ENTIRE_REVISION,
    INDETERMINATE,
    PARTIAL,
    TOTAL_FAILED,
    TOTAL_PASSED,
    FileReport,
    SignatureReport,
)
from validation.trusted_lists import ValidationSettings
from validation.xml_report import Validated, xml_report

log = logging.getLogger(__name__)
INDICATIONS = {AdESStatus.PASSED: TOTAL_PASSED, AdESStatus.FAILED: TOTAL_FAILED,
               AdESStatus.INDETERMINATE: INDETERMINATE}
# A reader's errors, and pyHanko's when a signature's structure is broken.
UNREADABLE: tuple[type[Exception], ...] = (*PDF_READER_ERRORS, SignatureValidationError)
# A certificate naming OCSP or a CRL needs its status (TS 119 172-3 "eithercheck").
HARD_FAIL = RevocationCheckingPolicy.from_legacy("hard-fail")
HEADER_WINDOW = 1024  # ISO 32000-2 §7.5.2: readers find %PDF- within the first 1024 bytes


def validate_pdf(data: bytes, settings: ValidationSettings, *, name: str = "document.pdf",
                 at: dt.datetime | None = None) -> FileReport:
    """Validate every signature of `data` (ETSI EN 319 102-1 §5.6.3 for each, in
    document order), as of `at` (default now). Synchronous and CPU-bound: callers in an
    event loop run it in a thread. Raises ValidationError for input that is no readable
    PDF."""
    if len(data) > settings.max_size:
        raise ValidationError("TOO_LARGE", f"larger than {settings.max_size} bytes")
    if b"%PDF-" not in data[:HEADER_WINDOW]:
        raise ValidationError("NOT_A_PDF", "no %PDF- header: not a PDF file")
    reader = _open(data)
    try:
        # Document timestamps (ISO 32000-2 §12.8.5) are the signatures' evidence, not signatures.
        signatures = [s for s in reader.embedded_signatures
                      if s.sig_object_type != "/DocTimeStamp"]
    except UNREADABLE as exc:
        raise ValidationError("MALFORMED_PDF", f"the signature fields cannot be read: {exc}"
                              ) from exc
    timing = ValidationTimingInfo(at, at, False) if at else ValidationTimingInfo.now()
    # Lists past their NextUpdate are flagged (and dropped if so configured) as of then.
    settings = settings.as_of(timing.validation_time)
    validated = asyncio.run(_validate_all(signatures, settings, timing)) if signatures else []
    return FileReport(name=name, sha256=hashlib.sha256(data).hexdigest(),
                      signatures=tuple(v.report for v in validated),
                      trusted_lists=settings.trusted_lists, xml=xml_report(validated))


def _open(data: bytes) -> PdfFileReader:
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        if reader.encrypted and not isinstance(reader.security_handler,
                                               StandardSecurityHandler):
            raise ValidationError("ENCRYPTED_PDF", "encrypted for certificate holders "
                                  "(public-key security handler): cannot be opened")
        # ISO 32000-2 §7.6.4: an owner-password-only file opens with the empty user password.
        if reader.encrypted and reader.decrypt("").status == AuthStatus.FAILED:
            raise ValidationError("ENCRYPTED_PDF", "encrypted with a user password")
        _ = reader.root
    except ValidationError:
        raise
    except UNREADABLE as exc:
        raise ValidationError("MALFORMED_PDF", f"not a readable PDF: {exc}") from exc
    return reader


async def _validate_all(signatures: list[EmbeddedPdfSignature], settings: ValidationSettings,
                        timing: ValidationTimingInfo) -> list[Validated]:
    out = []
    for signature in signatures:
        out.append(await _validate_one(signature, settings, timing))
    return out


def _spec(settings: ValidationSettings, freshness: CertRevTrustPolicy
          ) -> PdfSignatureValidationSpec:
    online = settings.online
    return PdfSignatureValidationSpec(SignatureValidationSpec(
        cert_validation_policy=CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build(trust_roots=settings.trust_anchors),
            revinfo_policy=freshness),
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=(RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH if online
                                  else RevinfoOnlineFetchingRule.LOCAL_ONLY),
            certificate_fetching_rule=(CertificateFetchingRule.FOLLOW_ONLINE_RULE if online
                                       else CertificateFetchingRule.NEVER_FETCH))))


def _freshness(signature: EmbeddedPdfSignature, timing: ValidationTimingInfo,
               max_age: dt.timedelta) -> tuple[CertRevTrustPolicy, ValidationTimingInfo]:
    """The revocation freshness (EN 319 102-1 §5.2.5.4) and timing for one signature.
    With a signature timestamp, the freshness is judged at the best-signature-time, as
    past signature validation (§5.6.2.4) does: revocation data issued after the
    timestamp, or at most `max_age` before it (the policy's maximum accepted age X of
    §5.2.5.4), covers the signature; so a B-LT keeps validating offline once its OCSP
    response is past its nextUpdate. The timestamp's own validation (§5.4) is what makes
    that time trusted: a signature whose timestamp fails does not pass whatever this
    says. Without one, revocation data must be current at the validation time."""
    stamped = _timestamp_time(signature)
    if stamped is None or stamped >= timing.validation_time:
        return CertRevTrustPolicy(HARD_FAIL), timing
    # pyHanko's TIME_AFTER_SIGNATURE with no cooldown: usable when thisUpdate >= the
    # best_signature_time it is given, here the timestamp's second less the maximum age
    # (revocation times are whole seconds: RFC 5280 §4.1.2.5.2).
    cutoff = stamped.replace(microsecond=0) - max_age
    return (CertRevTrustPolicy(HARD_FAIL, freshness=dt.timedelta(0),
                               freshness_req_type=FreshnessReqType.TIME_AFTER_SIGNATURE),
            dataclasses.replace(timing, best_signature_time=cutoff))


def _timestamp_time(signature: EmbeddedPdfSignature) -> dt.datetime | None:
    """The genTime of the signature's timestamp token (RFC 3161 §2.4.2), unverified."""
    tokens = extract_tst_data_iter(signature.signer_info, signed=False)
    try:
        token = next(tokens, None)
        if token is None:
            return None
        gen_time = token["encap_content_info"]["content"].parsed["gen_time"].native
    except UNREADABLE:
        return None
    return gen_time if isinstance(gen_time, dt.datetime) else None


async def _validate_one(signature: EmbeddedPdfSignature, settings: ValidationSettings,
                        timing: ValidationTimingInfo) -> Validated:
    field = _field_name(signature)
    try:
        freshness, timing = _freshness(signature, timing,
                                        settings.revocation_max_age)
        result = await ades_lta_validation(signature, _spec(settings, freshness),
                                           timing_info=timing)
        sub = _sub_indication(result)
        if sub == AdESPassed.OK and freshness.freshness_req_type \
                is FreshnessReqType.TIME_AFTER_SIGNATURE \
                and not _timestamp_proven(result.api_status):
            # Revocation data was judged at the timestamp's time: only a valid, trusted
            # timestamp makes that time the signature's (EN 319 102-1 §5.6.2.4).
            sub = AdESIndeterminate.TRY_LATER
        if sub == AdESPassed.OK and _changed_beyond_allowed(result.api_status):
            # EN 319 102-1 §5.2.9 (signature acceptance): our policy accepts later revisions
            # that add validation data, timestamps, signatures, form filling, annotations.
            sub = AdESIndeterminate.SIG_CONSTRAINTS_FAILURE
        if sub is not result.ades_subindic:
            result = dataclasses.replace(result, ades_subindic=sub, failure_msg=None)
        return Validated(signature, result, _report(field, signature, result, settings))
    except UNREADABLE as exc:
        # A signature pyHanko cannot even take apart (EN 319 102-1 §5.2.2 format checks).
        log.info("signature %s cannot be processed: %s", field, exc)
        return Validated(signature, None, _unreadable(field, signature, exc))
    except Exception as exc:
        # Any other fault on hostile input stays this signature's INDETERMINATE, never
        # the whole file's crash (the portal answers strangers' files).
        log.warning("signature %s: validator fault", field, exc_info=exc)
        return Validated(signature, None, _unreadable(field, signature, exc,
                                                      AdESIndeterminate.GENERIC))


def _report(field: str, signature: EmbeddedPdfSignature, result: AdESLTAValidationResult,
            settings: ValidationSettings) -> SignatureReport:
    sub = result.ades_subindic
    indication = INDICATIONS[sub.status]
    status = result.api_status
    signing_time, time_source = _signing_time(signature, status)
    qualification, reason = qualify(indication, None if isinstance(sub, AdESPassed)
                                    else sub.standard_name, _signer_cert(signature),
                                    status.validation_path if status else None,
                                    # EN 319 102-1 §5.5: the best-signature-time (a
                                    # timestamp's, else the validation time), never the
                                    # signer's claim.
                                    result.best_signature_time or signing_time, settings)
    coverage, detail = _coverage(status)
    return SignatureReport(
        field=field, indication=indication,
        sub_indication=None if isinstance(sub, AdESPassed) else sub.standard_name,
        qualification=qualification, qualification_reason=reason,
        signer=_signer_name(_signer_cert(signature)), signing_time=signing_time,
        time_source=time_source, coverage=coverage, coverage_detail=detail,
        level=_level(signature, status, result))


def _sub_indication(result: AdESLTAValidationResult) -> AdESSubIndic:
    """When pyHanko 0.38's past signature validation finds no POE it answers NO_POE,
    where EN 319 102-1 §5.6.2.4 returns the with-time result it could not improve
    (REVOKED_NO_POE for a certificate revoked before the signature timestamp); and it
    runs it after a PASSED result too (its step (6) TODO), which §5.6.3.4 does only after
    INDETERMINATE: a PASSED with-time result stands."""
    sub = result.ades_subindic
    status = result.api_status
    if sub != AdESIndeterminate.NO_POE or status is None:
        return sub
    current = status.trust_problem_indic
    timestamp = status.timestamp_validity
    if current is None and status.trusted and not status.revoked \
            and (timestamp is None or timestamp.trusted):
        return AdESPassed.OK
    if status.revoked and current in (None, AdESIndeterminate.REVOKED_NO_POE):
        return AdESIndeterminate.REVOKED_NO_POE
    return current or sub


def _timestamp_proven(status: PdfSignatureStatus | None) -> bool:
    """The signature timestamp validated: intact, its signature valid, its TSA trusted."""
    stamp = status.timestamp_validity if status is not None else None
    return stamp is not None and stamp.intact and stamp.valid and stamp.trusted


def _changed_beyond_allowed(status: PdfSignatureStatus | None) -> bool:
    """Later revisions that the signature's DocMDP/FieldMDP permissions (ISO 32000-2
    §12.8.2.2) or the allowed kinds of change do not cover (pyHanko's difference
    analysis)."""
    return status is not None and (
        status.docmdp_ok is False or status.modification_level == ModificationLevel.OTHER
        or status.coverage not in (SignatureCoverageLevel.ENTIRE_FILE,
                                   SignatureCoverageLevel.ENTIRE_REVISION))


def _unreadable(field: str, signature: EmbeddedPdfSignature, exc: Exception,
                sub: AdESSubIndic | None = None) -> SignatureReport:
    sub = sub or getattr(exc, "ades_subindication", None) or AdESFailure.FORMAT_FAILURE
    indication = INDICATIONS[sub.status]
    cert = _signer_cert(signature)
    return SignatureReport(
        field=field, indication=indication, sub_indication=sub.standard_name,
        qualification="not AdES" if indication == TOTAL_FAILED else "Indeterminate AdES",
        qualification_reason=f"the signature cannot be processed: {str(exc)[:200]}",
        signer=_signer_name(cert), signing_time=_claimed_time(signature),
        time_source="claimed" if _claimed_time(signature) else "none",
        coverage=PARTIAL, coverage_detail="not determined: the signature cannot be processed",
        level="B-B")


def _field_name(signature: EmbeddedPdfSignature) -> str:
    try:
        return str(signature.field_name)
    except (KeyError, TypeError, AttributeError, PdfError):
        return "?"


def _signer_cert(signature: EmbeddedPdfSignature) -> x509.Certificate | None:
    try:
        return signature.signer_cert
    except (KeyError, TypeError, ValueError, AttributeError, SignatureValidationError):
        return None


def _signer_name(cert: x509.Certificate | None) -> str | None:
    """The signer's name as their certificate gives it (EN 319 412-2 §4.2.4)."""
    if cert is None:
        return None
    try:
        subject = cert.subject.native
    except (ValueError, TypeError, KeyError):  # a name asn1crypto cannot decode
        return None
    if subject.get("common_name"):
        return str(subject["common_name"])
    names = " ".join(str(subject[k]) for k in ("given_name", "surname") if subject.get(k))
    return names or cert.subject.human_friendly


def _claimed_time(signature: EmbeddedPdfSignature) -> dt.datetime | None:
    try:
        return signature.self_reported_timestamp
    except (KeyError, TypeError, ValueError, AttributeError, PdfError):  # a damaged /M
        return None


def _signing_time(signature: EmbeddedPdfSignature, status: PdfSignatureStatus | None
                  ) -> tuple[dt.datetime | None, str]:
    """The signature timestamp's time when one validated (EN 319 102-1 §5.4: the best
    signature time), else the time the signer claims (signingTime, /M)."""
    if status is not None and status.timestamp_validity is not None \
            and status.timestamp_validity.valid:
        return status.timestamp_validity.timestamp, "timestamp"
    claimed = _claimed_time(signature)
    return claimed, "claimed" if claimed else "none"


def _coverage(status: PdfSignatureStatus | None) -> tuple[str, str]:
    """What the signature covers and which later changes the file holds (ISO 32000-2
    §12.8.1 byte ranges; pyHanko's difference analysis of later revisions)."""
    if status is None:
        return PARTIAL, "not determined"
    level = status.coverage
    if level == SignatureCoverageLevel.ENTIRE_FILE:
        return ENTIRE_FILE, "the signature covers the whole file"
    if level != SignatureCoverageLevel.ENTIRE_REVISION:
        return PARTIAL, "the signature covers only part of its revision"
    modified = status.modification_level
    if modified in (None, ModificationLevel.NONE, ModificationLevel.LTA_UPDATES):
        return ENTIRE_REVISION, ("the signature covers its revision; later revisions add "
                                 "validation data and timestamps only")
    if modified == ModificationLevel.FORM_FILLING:
        return ENTIRE_REVISION, ("the signature covers its revision; later revisions fill "
                                 "in form fields or add signatures (allowed)")
    if modified == ModificationLevel.ANNOTATIONS:
        return ENTIRE_REVISION, ("the signature covers its revision; later revisions add "
                                 "annotations (allowed)")
    return PARTIAL, ("the signature covers its revision, but later revisions change the "
                     "document beyond form filling and annotations")


def _level(signature: EmbeddedPdfSignature, status: PdfSignatureStatus | None,
           result: AdESLTAValidationResult) -> str:
    """The PAdES baseline level the file carries (EN 319 142-1 §6.3): B-T with a
    signature timestamp, B-LT with a DSS after it, B-LTA with a document timestamp."""
    # Attribute types only: .native of the whole set decodes every certificate (seconds).
    unsigned = signature.signer_info["unsigned_attrs"]
    has_ts = isinstance(unsigned, cms.CMSAttributes) and any(
        attr["type"].native == "signature_time_stamp_token" for attr in unsigned)
    if not has_ts:
        return "B-B"
    if "/DSS" not in signature.reader.root:
        return "B-T"
    if result.oldest_evidence_record_timestamp is not None:
        return "B-LTA"
    return "B-LT"


__all__ = ["validate_pdf"]
