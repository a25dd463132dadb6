"""Certificate profiles: what each certificate the CA makes contains.

Built with asn1crypto and signed by a `CaKey` (file or HSM). The qualified
profile follows ETSI EN 319 412-2 (natural persons) and 319 412-5
(qcStatements) under the QCP-n-qscd policy of EN 319 411-2.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from asn1crypto import core, x509
from asn1crypto import keys as asn1_keys

# pyHanko registers the qcStatements extension with asn1crypto and defines its types.
from pyhanko.sign.ades import qualified_asn1

from ca.keys import CaKey, signing_choice

QCP_N_QSCD = "0.4.0.194112.1.2"
SEMANTICS_NATURAL_PERSON = "0.4.0.194121.1.1"
ID_QCS_PKIXQCSYNTAX_V2 = "1.3.6.1.5.5.7.11.2"
ANY_POLICY = "2.5.29.32.0"
MIN_SERIAL_BITS = 64


def random_serial() -> int:
    """A positive serial with at least 64 random bits (CA/B BR §7.1; EN 319 412-2)."""
    return secrets.randbits(127) | (1 << 126)  # 127 bits, top bit set: always 16 bytes


def key_identifier(public_key: asn1_keys.PublicKeyInfo) -> bytes:
    """RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING."""
    return hashlib.sha1(public_key["public_key"].contents[1:]).digest()  # noqa: S324


def spki_sha256(public_key: asn1_keys.PublicKeyInfo) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: how evidence names a key."""
    return hashlib.sha256(public_key.dump()).hexdigest()


def _time(when: dt.datetime) -> x509.Time:
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    if 1950 <= when.year < 2050:
        return x509.Time({"utc_time": when})
    return x509.Time({"general_time": when})


def _extension(name: str, value: object, critical: bool = False) -> dict[str, object]:
    return {"extn_id": name, "critical": critical, "extn_value": value}


def sign_certificate(tbs: x509.TbsCertificate, issuer_key: CaKey) -> x509.Certificate:
    """Sign `tbs`, built by `_tbs` with this key's signature algorithm already in it."""
    hash_name, algorithm = signing_choice(issuer_key)
    signature = issuer_key.sign(tbs.dump(), hash_name)
    return x509.Certificate({
        "tbs_certificate": tbs, "signature_algorithm": {"algorithm": algorithm},
        "signature_value": signature})


@dataclass(frozen=True)
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def starting_now(cls, days: int, *, cap: dt.datetime | None = None) -> Validity:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        end = now + dt.timedelta(days=days)
        if cap is not None:
            end = min(end, cap)  # never beyond the issuer's own validity
        return cls(now - dt.timedelta(minutes=1), end)


def _tbs(*, serial: int, subject: x509.Name, issuer: x509.Name,
         public_key: asn1_keys.PublicKeyInfo, validity: Validity,
         extensions: list[Any], issuer_key: CaKey) -> x509.TbsCertificate:
    return x509.TbsCertificate({
        "version": "v3",
        "serial_number": serial,
        "signature": {"algorithm": signing_choice(issuer_key)[1]},
        "issuer": issuer,
        "validity": {"not_before": _time(validity.not_before),
                     "not_after": _time(validity.not_after)},
        "subject": subject,
        "subject_public_key_info": public_key,
        "extensions": extensions,
    })


def ca_certificate(*, subject: x509.Name, public_key: asn1_keys.PublicKeyInfo,
                   issuer: x509.Certificate | None, issuer_key: CaKey, validity: Validity,
                   path_length: int | None) -> x509.Certificate:
    """A root (issuer None: self-signed) or an issuing CA certificate."""
    issuer_public = issuer.public_key if issuer is not None else public_key
    extensions = [
        _extension("basic_constraints", {"ca": True, "path_len_constraint": path_length},
                   critical=True),
        _extension("key_usage", {"key_cert_sign", "crl_sign"}, critical=True),
        _extension("key_identifier", key_identifier(public_key)),
        _extension("authority_key_identifier",
                   {"key_identifier": key_identifier(issuer_public)}),
    ]
    return sign_certificate(_tbs(
        serial=random_serial(), subject=subject,
        issuer=issuer.subject if issuer is not None else subject,
        public_key=public_key, validity=validity, extensions=extensions,
        issuer_key=issuer_key), issuer_key)


def service_certificate(*, subject: x509.Name, public_key: asn1_keys.PublicKeyInfo,
                        issuer: x509.Certificate, issuer_key: CaKey, validity: Validity,
                        purpose: str, ca_issuers_url: str | None = None) -> x509.Certificate:
    """The delegated OCSP responder ('ocsp_signing', with id-pkix-ocsp-nocheck; RFC 6960
    §4.2.2.2) or the timestamping unit ('time_stamping', EKU critical; RFC 3161 §2.3).
    `ca_issuers_url`: where the issuing CA's certificate is published, as AIA caIssuers
    (RFC 5280 §4.2.2.1), so a relying party holding only the root builds the path."""
    extensions = [
        _extension("basic_constraints", {"ca": False}, critical=True),
        _extension("key_usage", {"digital_signature"}, critical=True),
        _extension("extended_key_usage", [purpose], critical=purpose == "time_stamping"),
        _extension("key_identifier", key_identifier(public_key)),
        _extension("authority_key_identifier",
                   {"key_identifier": key_identifier(issuer.public_key)}),
    ]
    if ca_issuers_url is not None:
        extensions.append(_extension("authority_information_access", [
            {"access_method": "ca_issuers",
             "access_location": x509.GeneralName(name="uniform_resource_identifier",
                                                 value=ca_issuers_url)}]))
    if purpose == "ocsp_signing":
        extensions.append(_extension("ocsp_no_check", None))
    return sign_certificate(_tbs(
        serial=random_serial(), subject=subject, issuer=issuer.subject,
        public_key=public_key, validity=validity, extensions=extensions,
        issuer_key=issuer_key), issuer_key)


def ca_issuers_urls(cert: x509.Certificate) -> list[str]:
    """The caIssuers URLs of `cert`'s Authority Information Access (RFC 5280 §4.2.2.1)."""
    return [str(d["access_location"].native)
            for d in cert.authority_information_access_value or []
            if d["access_method"].native == "ca_issuers"]


@dataclass(frozen=True)
class PublicationPoints:
    """Where relying parties find the CA's documents and status services."""

    crl_url: str
    ocsp_url: str
    ca_issuers_url: str
    cps_url: str
    pds_url: str
    pds_language: str


def qualified_certificate(*, serial: int, subject: x509.Name,
                          public_key: asn1_keys.PublicKeyInfo, issuer: x509.Certificate,
                          issuer_key: CaKey, validity: Validity,
                          points: PublicationPoints) -> x509.Certificate:
    """A qualified certificate for electronic signatures by a natural person, key on a
    QSCD (ETSI EN 319 412-2 §4, 319 412-5 §4; policy QCP-n-qscd)."""
    extensions = [
        *(x509.Extension.load(der) for der in _qualified_extensions(
            points, key_identifier(issuer.public_key))),
        _extension("key_identifier", key_identifier(public_key)),
    ]
    return sign_certificate(_tbs(
        serial=serial, subject=subject, issuer=issuer.subject, public_key=public_key,
        validity=validity, extensions=extensions, issuer_key=issuer_key), issuer_key)


@functools.lru_cache(maxsize=8)
def _qualified_extensions(points: PublicationPoints, issuer_key_id: bytes
                          ) -> tuple[bytes, ...]:
    """The extensions every qualified certificate of one issuer shares, encoded once:
    building them with asn1crypto costs more than the issuer's signature."""
    statements = qualified_asn1.QcStatements([
        {"statement_id": "qc_compliance"},
        {"statement_id": "qc_sscd"},
        {"statement_id": "qc_type",
         "statement_info": qualified_asn1.QcCertificateType(["qct_esign"])},
        {"statement_id": "qc_pki_disclosure_statements",
         "statement_info": qualified_asn1.PKIDisclosureStatements([
             {"url": points.pds_url, "language": points.pds_language}])},
        # Semantics identifier for natural persons (EN 319 412-1 §5.1.3).
        {"statement_id": ID_QCS_PKIXQCSYNTAX_V2,
         "statement_info": _semantics_information()},
    ])
    extensions = [
        _extension("basic_constraints", {"ca": False}, critical=True),
        _extension("key_usage", {"non_repudiation"}, critical=True),
        _extension("certificate_policies", [{
            "policy_identifier": QCP_N_QSCD,
            "policy_qualifiers": [{"policy_qualifier_id": "certification_practice_statement",
                                   "qualifier": points.cps_url}],
        }]),
        _extension("qc_statements", statements),
        _extension("crl_distribution_points", [{
            "distribution_point": x509.DistributionPointName(
                name="full_name",
                value=[x509.GeneralName(name="uniform_resource_identifier",
                                        value=points.crl_url)]),
        }]),
        _extension("authority_information_access", [
            {"access_method": "ocsp",
             "access_location": x509.GeneralName(name="uniform_resource_identifier",
                                                 value=points.ocsp_url)},
            {"access_method": "ca_issuers",
             "access_location": x509.GeneralName(name="uniform_resource_identifier",
                                                 value=points.ca_issuers_url)},
        ]),
        _extension("authority_key_identifier", {"key_identifier": issuer_key_id}),
    ]
    return tuple(x509.Extension(extension).dump() for extension in extensions)


class _SemanticsInformation(core.Sequence):  # type: ignore[misc]
    """RFC 3739 §3.2.6.1 SemanticsInformation (only the identifier is used)."""

    _fields = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("semantics_identifier", core.ObjectIdentifier, {"optional": True}),
    ]


def _semantics_information() -> core.Any:
    info = _SemanticsInformation({"semantics_identifier": SEMANTICS_NATURAL_PERSON})
    return core.Any.load(info.dump())


def natural_person_name(*, given_name: str, surname: str, serial_number: str,
                        country: str) -> x509.Name:
    """The subject of EN 319 412-2 §4.2.4: given name, surname, serialNumber with a
    semantics identifier (e.g. IDCFR-...), country, and a common name from them."""
    return x509.Name.build({
        "country_name": country,
        "given_name": given_name,
        "surname": surname,
        "serial_number": serial_number,
        "common_name": f"{given_name} {surname}",
    })
