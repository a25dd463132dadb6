"""Is a signer's certificate qualified for a qualified electronic signature?

The checks of the portal's `certificates/check` (API.md): the qcStatements of ETSI
EN 319 412-5 (QcCompliance, QcSSCD, QcType esign), the certificate policy QCP-n-qscd of
EN 319 411-2, keyUsage nonRepudiation (EN 319 412-2 §4.3.2), validity at a moment, a
path to one of our trust roots (RFC 5280 §6), and optionally the revocation status from
the OCSP responder in the certificate's AIA (RFC 6960). Path building, path validation
and OCSP are pyhanko-certvalidator's.

Every failed check adds one short stable code to `reasons`; pages translate by code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from asn1crypto import x509
from cryptography import x509 as cx509

# Registers the qcStatements extension (1.3.6.1.5.5.7.1.3) and its types with asn1crypto.
from pyhanko.sign.ades import qualified_asn1
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    InsufficientRevinfoError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

QCP_N_QSCD = "0.4.0.194112.1.2"
MAX_CERTIFICATE_BYTES = 16 * 1024
# Clock skew tolerated between this portal and the CA when judging validity periods of
# certificates and OCSP responses (pyhanko-certvalidator's default is 1 s): a response
# made a few seconds "after" our clock is current, not unknown. 5 minutes, as OpenSSL's
# `ocsp -validity_period` default (MAX_VALIDITY_PERIOD).
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_CHAIN = 8

# The reason codes, in the order they are reported.
NO_QC_STATEMENTS = "no-qc-statements"
NOT_QC_COMPLIANT = "not-qc-compliant"  # no QcCompliance (0.4.0.1862.1.1)
NON_EU_LEGISLATION = "non-eu-legislation"  # QcCClegislation: qualified elsewhere
NO_QSCD = "no-qscd"  # no QcSSCD (0.4.0.1862.1.4): the key is not on a QSCD
NOT_ESIGN = "not-esign"  # QcType absent or without esign (0.4.0.1862.1.6.1)
NOT_QCP_N_QSCD = "not-qcp-n-qscd"
NO_NON_REPUDIATION = "no-non-repudiation"
NOT_END_ENTITY = "not-end-entity"
NOT_YET_VALID = "not-yet-valid"
EXPIRED = "expired"
UNTRUSTED_ISSUER = "untrusted-issuer"
REVOKED = "revoked"
REVOCATION_UNKNOWN = "revocation-unknown"
REASONS = (NO_QC_STATEMENTS, NOT_QC_COMPLIANT, NON_EU_LEGISLATION, NO_QSCD, NOT_ESIGN,
           NOT_QCP_N_QSCD, NO_NON_REPUDIATION, NOT_END_ENTITY, NOT_YET_VALID, EXPIRED,
           UNTRUSTED_ISSUER, REVOKED, REVOCATION_UNKNOWN)

_NO_REVOCATION = CertRevTrustPolicy(RevocationCheckingPolicy(
    ee_certificate_rule=RevocationCheckingRule.NO_CHECK,
    intermediate_ca_cert_rule=RevocationCheckingRule.NO_CHECK))
# The signer's status from OCSP (a CRL is used when the responder is silent); CA
# certificates are checked when they declare where.
_OCSP = CertRevTrustPolicy(RevocationCheckingPolicy(
    ee_certificate_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
    intermediate_ca_cert_rule=RevocationCheckingRule.CHECK_IF_DECLARED))


class CertificateMalformed(ValueError):
    """The certificate, a chain element or a trust root is not a DER X.509 certificate
    (or the arguments are unusable); the message names which."""


@dataclass(frozen=True)
class QualifiedCheck:
    qualified: bool
    subject: str  # RFC 4514
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    reasons: list[str] = field(default_factory=list)
    serial: str = ""  # hexadecimal
    common_name: str = ""
    issuer_organisation: str = ""  # the issuer's O (its CN when it has none)

    @property
    def status(self) -> str:
        """For Personal Space: "revoked", "expired", "not-yet-valid" or "valid"."""
        for reason in (REVOKED, EXPIRED, NOT_YET_VALID):
            if reason in self.reasons:
                return reason
        return "valid"


async def check_qualified(certificate: bytes, chain: Sequence[bytes], *,
                          trust_roots: Sequence[bytes], at: dt.datetime, ocsp: bool,
                          timeout: float = 10.0) -> QualifiedCheck:
    """Whether `certificate` (DER; `chain`: its CA certificates, nearest first) is a
    qualified certificate for electronic signatures on a QSCD under QCP-n-qscd, valid
    at `at` and issued under one of `trust_roots`. With `ocsp`, its revocation status is
    asked from the responder named in its AIA (network: loopback in tests)."""
    cert = _load("certificate", certificate)
    if isinstance(chain, bytes | str) or len(chain) > MAX_CHAIN:
        raise CertificateMalformed(f"chain: a list of at most {MAX_CHAIN} certificates")
    chain_certs = [_load(f"chain[{i}]", der) for i, der in enumerate(chain)]
    if isinstance(trust_roots, bytes | str) or not trust_roots:
        raise CertificateMalformed("trust_roots: at least one certificate")
    roots = [_load(f"trust_roots[{i}]", der) for i, der in enumerate(trust_roots)]
    if not isinstance(at, dt.datetime) or at.tzinfo is None:
        raise CertificateMalformed("at: a timezone-aware datetime")
    if timeout <= 0:
        raise CertificateMalformed("timeout: a positive number of seconds")

    reasons = qc_statement_reasons(cert) + profile_reasons(cert)
    not_before, not_after = cert.not_valid_before, cert.not_valid_after
    if at < not_before:
        reasons.append(NOT_YET_VALID)
    if at > not_after:
        reasons.append(EXPIRED)
    # The path is checked at a moment within the certificate's own validity, so that an
    # expired certificate still says whether its issuer is ours; revocation only then.
    moment = min(max(at, not_before), not_after)
    within = moment == at
    reasons += await _path_reasons(cert, chain_certs, roots, moment,
                                   ocsp=ocsp and within, timeout=timeout)
    parsed = cx509.load_der_x509_certificate(cert.dump())
    names = parsed.subject.get_attributes_for_oid(cx509.NameOID.COMMON_NAME)
    issuer_names = (parsed.issuer.get_attributes_for_oid(cx509.NameOID.ORGANIZATION_NAME)
                    or parsed.issuer.get_attributes_for_oid(cx509.NameOID.COMMON_NAME))
    return QualifiedCheck(
        qualified=not reasons, subject=parsed.subject.rfc4514_string(),
        issuer=parsed.issuer.rfc4514_string(), not_before=not_before, not_after=not_after,
        reasons=reasons, serial=f"{cert.serial_number:x}",
        common_name=str(names[0].value) if names else "",
        issuer_organisation=str(issuer_names[0].value) if issuer_names else "")


def qc_statement_reasons(cert: x509.Certificate) -> list[str]:
    """EN 319 412-5 §4.2: QcCompliance, no QcCClegislation, QcSSCD, QcType esign."""
    statements = _extension(cert, "qc_statements")
    if statements is None:
        return [NO_QC_STATEMENTS]
    by_id = {s["statement_id"].dotted: s for s in statements}
    reasons = []
    if "0.4.0.1862.1.1" not in by_id:
        reasons.append(NOT_QC_COMPLIANT)
    if "0.4.0.1862.1.7" in by_id:
        reasons.append(NON_EU_LEGISLATION)
    if "0.4.0.1862.1.4" not in by_id:
        reasons.append(NO_QSCD)
    qc_type = by_id.get("0.4.0.1862.1.6")
    info = qc_type["statement_info"] if qc_type is not None else None
    # a QcType whose info does not parse as QcCertificateType names no type
    types = ({t.dotted for t in info} if isinstance(info, qualified_asn1.QcCertificateType)
             else set())
    if "0.4.0.1862.1.6.1" not in types:
        reasons.append(NOT_ESIGN)
    return reasons


def profile_reasons(cert: x509.Certificate) -> list[str]:
    """The policy (EN 319 411-2 §5.3), keyUsage (EN 319 412-2 §4.3.2), end entity."""
    reasons = []
    policies = _extension(cert, "certificate_policies")
    identifiers = {p["policy_identifier"].dotted for p in policies} if policies else set()
    if QCP_N_QSCD not in identifiers:
        reasons.append(NOT_QCP_N_QSCD)
    usage = cert.key_usage_value
    if usage is None or "non_repudiation" not in usage.native:
        reasons.append(NO_NON_REPUDIATION)
    constraints = cert.basic_constraints_value
    if constraints is not None and constraints["ca"].native:
        reasons.append(NOT_END_ENTITY)
    return reasons


async def _path_reasons(cert: x509.Certificate, chain: list[x509.Certificate],
                        roots: list[x509.Certificate], moment: dt.datetime, *, ocsp: bool,
                        timeout: float) -> list[str]:
    if ocsp:
        # The path first, offline: only a certificate our CA signed gets its AIA
        # addresses asked (a crafted certificate must not make us fetch where it says).
        offline = await _path_reasons(cert, chain, roots, moment, ocsp=False,
                                      timeout=timeout)
        if offline:
            return offline
    backend = AIOHttpFetcherBackend(per_request_timeout=timeout) if ocsp else None
    context = ValidationContext(
        trust_roots=roots, other_certs=chain, moment=moment, allow_fetching=ocsp,
        revinfo_policy=_OCSP if ocsp else _NO_REVOCATION, fetcher_backend=backend,
        time_tolerance=CLOCK_SKEW)
    validator = CertificateValidator(cert, intermediate_certs=chain,
                                     validation_context=context)
    try:
        await validator.async_validate_usage(set())  # type: ignore[no-untyped-call]
    except RevokedError:
        return [REVOKED]
    except InsufficientRevinfoError:
        return [REVOCATION_UNKNOWN]
    except PathBuildingError:
        return [UNTRUSTED_ISSUER]
    except (PathValidationError, ValidationError) as exc:
        if ocsp and "revocation" in str(exc).lower():
            return [REVOCATION_UNKNOWN]
        return [UNTRUSTED_ISSUER]  # a bad signature, an expired or unfit CA in the path
    finally:
        if backend is not None:
            await backend.close()  # type: ignore[no-untyped-call]
    return []


def _extension(cert: x509.Certificate, name: str) -> x509.Asn1Value | None:
    for extension in cert["tbs_certificate"]["extensions"]:
        if extension["extn_id"].native == name:
            return extension["extn_value"].parsed
    return None


def _load(what: str, der: bytes) -> x509.Certificate:
    if not isinstance(der, bytes | bytearray) or not der or len(der) > MAX_CERTIFICATE_BYTES:
        raise CertificateMalformed(f"{what}: DER bytes of at most {MAX_CERTIFICATE_BYTES}")
    try:
        cert = x509.Certificate.load(bytes(der), strict=True)
        _ = cert.native  # parse it all now: malformed parts fail here
    except (ValueError, TypeError) as exc:
        raise CertificateMalformed(f"{what}: not a DER X.509 certificate") from exc
    return cert
