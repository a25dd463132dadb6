"""A service's electronic seal certificate (ETSI EN 319 412-3, legal persons): the key
a service of the deployment (the portal's validation service) seals its reports with,
certified by the issuing CA and recorded in the registry, so OCSP and the CRL answer for
it like for any certificate this CA issued. Not qualified: the key lives in a file."""

from __future__ import annotations

import hashlib

from asn1crypto import keys as asn1_keys
from asn1crypto import x509

from ca.authority import Authority
from ca.profiles import (
    Validity,
    _extension,
    _tbs,
    key_identifier,
    random_serial,
    sign_certificate,
)
from ca.registry import Registry

SEAL_DAYS = 3 * 365


def issue_seal(authority: Authority, registry: Registry, public_key: bytes,
               organization: str, common_name: str) -> x509.Certificate:
    """The seal certificate for `public_key` (DER SubjectPublicKeyInfo): keyUsage
    digitalSignature and nonRepudiation (EN 319 412-3 §4.3.2: content commitment), AIA
    OCSP and caIssuers and the CRL distribution point (RFC 5280 §4.2.1.13, §4.2.2.1).
    One certificate per key: asking again for the same key answers the recorded one."""
    spki = asn1_keys.PublicKeyInfo.load(public_key)
    spki_sha256 = hashlib.sha256(spki.dump()).hexdigest()
    evidence = f"seal:{spki_sha256}"  # the registry's one-certificate-per-evidence key
    known = registry.by_evidence(evidence)
    if known is not None:
        return known.certificate
    points = authority.config.points
    subject = x509.Name.build({"country_name": authority.config.country,
                               "organization_name": organization,
                               "common_name": common_name})
    issuer = authority.issuing
    key = authority.keys["issuing"]

    def build(serial: int) -> x509.Certificate:
        extensions = [
            _extension("basic_constraints", {"ca": False}, critical=True),
            _extension("key_usage", {"digital_signature", "non_repudiation"}, critical=True),
            _extension("key_identifier", key_identifier(spki)),
            _extension("authority_key_identifier",
                       {"key_identifier": key_identifier(issuer.public_key)}),
            _extension("crl_distribution_points", [{
                "distribution_point": x509.DistributionPointName(
                    name="full_name", value=[_uri(points.crl_url)])}]),
            _extension("authority_information_access", [
                {"access_method": "ocsp", "access_location": _uri(points.ocsp_url)},
                {"access_method": "ca_issuers",
                 "access_location": _uri(points.ca_issuers_url)}]),
        ]
        return sign_certificate(_tbs(
            serial=serial, subject=subject, issuer=issuer.subject, public_key=spki,
            validity=Validity.starting_now(SEAL_DAYS, cap=issuer.not_valid_after),
            extensions=extensions, issuer_key=key), key)

    return registry.issue(build, new_serial=random_serial, evidence_id=evidence,
                          spki_sha256=spki_sha256).certificate


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)
