"""The qualification of a signature (ETSI TS 119 172-4 §4.3, with the certificate's
qualified status per TS 119 615 §4.2 and §4.3): QES, AdES/QC or AdES, and in words why a
signature is not QES.

pyHanko's QualificationAssessor gives the certificate's status from the registry's
granted periods and the certificate's QC statements (with the list's qualifiers
overriding them). What it lacks, and this module adds: the signature-level answer, and
the reason (the issuer on no list, the service withdrawn at the signing time, no
QcCompliance, no QSCD)."""

from __future__ import annotations

import datetime as dt

from asn1crypto import x509
from pyhanko.sign.ades.qualified_asn1 import get_qc_statements
from pyhanko.sign.validation.qualified.assess import QualificationAssessor
from pyhanko.sign.validation.qualified.tsp import CA_QC_URI, QcCertType
from pyhanko_certvalidator.path import ValidationPath

from validation.report import (
    ADES,
    ADES_QC,
    INDETERMINATE,
    INDETERMINATE_PREFIX,
    NOT_ADES,
    QES,
    TOTAL_FAILED,
)
from validation.trusted_lists import STATUS_GRANTED, ValidationSettings

# TS 119 172-4 §4.3 names for seals (a QC for eSeal); QES and AdES/QC are for eSig.
QESEAL = "QESeal"
ADESEAL_QC = "AdESeal/QC"


# EN 319 102-1 §5.1.3 Table 5 and 6, in a sentence a signer or a bank can read.
SUB_INDICATION_TEXT = {
    "HASH_FAILURE": "the document was changed after it was signed",
    "SIG_CRYPTO_FAILURE": "the signature value does not match the signer's key",
    "FORMAT_FAILURE": "the signature is not a well-formed PAdES signature",
    "REVOKED": "the signer's certificate was revoked before the signature was made",
    "REVOKED_NO_POE": "the signer's certificate is revoked, and nothing proves the signature "
                      "was made before the revocation",
    "REVOKED_CA_NO_POE": "a certificate of the issuer's chain is revoked",
    "EXPIRED": "the signer's certificate had expired when the signature was made",
    "NOT_YET_VALID": "the signature predates the signer's certificate",
    "OUT_OF_BOUNDS_NO_POE": "the signer's certificate has expired or is not yet valid, and "
                            "nothing proves the signature was made within its validity",
    "OUT_OF_BOUNDS_NOT_REVOKED": "the signer's certificate has expired, and nothing proves "
                                 "the signature was made within its validity",
    "NO_CERTIFICATE_CHAIN_FOUND": "the signer's certificate does not chain to a service of "
                                  "a trusted list used",
    "NO_SIGNING_CERTIFICATE_FOUND": "the signer's certificate is not in the signature",
    "TRY_LATER": "revocation data newer than the signature is not available yet",
    "NO_POE": "nothing proves the signature existed while its certificate was valid",
    "CRYPTO_CONSTRAINTS_FAILURE": "an algorithm or key size used is no longer accepted",
    "CHAIN_CONSTRAINTS_FAILURE": "the certificate chain does not meet the validation "
                                 "constraints (e.g. key usage, revocation data)",
    "SIG_CONSTRAINTS_FAILURE": "the signature does not meet the validation policy: the "
                               "document was changed after signing beyond form filling, "
                               "annotations and further signatures",
}


def explain(sub_indication: str | None) -> str:
    text = SUB_INDICATION_TEXT.get(sub_indication or "", "the validation could not conclude")
    return f"{text} ({sub_indication})" if sub_indication else text


def qualify(indication: str, sub_indication: str | None, signer: x509.Certificate | None,
            path: ValidationPath | None, moment: dt.datetime | None,
            settings: ValidationSettings) -> tuple[str, str | None]:
    """(qualification, reason) at `moment`, the best-signature-time (TS 119 615 §4.3
    judges the issuer's service at the time of signing): the reason says why it is not
    QES (None when it is)."""
    if indication == TOTAL_FAILED:
        return NOT_ADES, explain(sub_indication)
    moment = moment or dt.datetime.now(dt.UTC)
    level, reason = _certificate_level(signer, path, moment, settings)
    if indication == INDETERMINATE:
        why = explain(sub_indication)
        # Without a chain the certificate's level says nothing the sub-indication does not.
        extra = f"; {reason}" if reason and path is not None else ""
        return INDETERMINATE_PREFIX + level, why + extra
    return level, reason


def _certificate_level(signer: x509.Certificate | None, path: ValidationPath | None,
                       moment: dt.datetime, settings: ValidationSettings
                       ) -> tuple[str, str | None]:
    if signer is None:
        return ADES, "the signer's certificate is missing"
    if path is None:
        return ADES, "no certificate chain to a trusted list was found"
    result = QualificationAssessor(settings.registry).check_entity_cert_qualified(
        path, moment=moment)
    status = result.status
    own = _own_statements(signer)
    if not status.qualified:
        return ADES, _why_not_qualified(path, moment, settings, "qc_compliance" in own)
    issued = signer.not_valid_before
    if issued < moment and not QualificationAssessor(settings.registry) \
            .check_entity_cert_qualified(path, moment=issued).status.qualified:
        # TS 119 615 §4.3: a certificate is qualified when it was issued under a granted
        # CA/QC service, and still at the signing time; pyHanko judges the latter only.
        return ADES, _why_not_qualified(path, issued, settings, "qc_compliance" in own,
                                        when="when the certificate was issued")
    seal = status.qc_type == QcCertType.QC_ESEAL
    if status.qc_type == QcCertType.QC_WEB:
        return ADES, "the certificate is qualified for website authentication, not signatures"
    if not status.qc_key_security.is_qscd:
        if "qc_sscd" in own:
            why = ("the trusted list's qualifiers (TS 119 612 §5.5.9.2, e.g. QCNoQSCD) say "
                   "the private key is not in a qualified signature creation device, "
                   "whatever the certificate's QcSSCD statement says")
        else:
            why = ("the private key is not declared to be in a qualified signature "
                   "creation device (no QcSSCD statement, EN 319 412-5 §4.2.2, nor a "
                   "trusted-list qualifier)")
        return (ADESEAL_QC if seal else ADES_QC), why
    return (QESEAL if seal else QES), None


def _own_statements(cert: x509.Certificate) -> set[str]:
    """The QC statements the certificate makes of itself (EN 319 412-5 §4)."""
    try:
        return {str(st["statement_id"].native) for st in get_qc_statements(cert)}
    except (ValueError, TypeError, KeyError):
        return set()


def _why_not_qualified(path: ValidationPath, moment: dt.datetime,
                       settings: ValidationSettings, claims_qualified: bool,
                       when: str = "at the signing time") -> str:
    """The first reason along TS 119 615 §4.3's steps: the issuer's service on a list,
    its status at the signing time, then the certificate's own statements."""
    issuers = [c for c in path.iter_certs(include_root=True) if c is not path.leaf]
    services = [s for cert in issuers for s in settings.services_for(cert)
                if s.service_type == CA_QC_URI]
    if not services:
        if not any(t.ok for t in settings.trusted_lists):
            return "no trusted list could be used"
        return "the issuer is not a qualified service (CA/QC) on any trusted list used"
    day = moment.astimezone(dt.UTC)
    for service in services:
        period = service.status_at(moment)
        if period is None:
            return (f"the issuer's service \"{service.name}\" had no status on its trusted "
                    f"list {when} ({day:%Y-%m-%d %H:%M}Z)")
        if period.status != STATUS_GRANTED:
            return (f"the issuer's service was {period.name} on "
                    f"{period.since.astimezone(dt.UTC):%Y-%m-%d}, not granted {when} "
                    f"({day:%Y-%m-%d %H:%M}Z)")
    if claims_qualified:
        return ("the trusted list's qualifiers (TS 119 612 §5.5.9.2, e.g. NotQualified) "
                "say the certificate is not qualified, whatever its QcCompliance statement")
    return ("the certificate is not a qualified certificate (no QcCompliance statement, "
            "EN 319 412-5 §4.2.1, nor a trusted-list qualifier making it one)")
