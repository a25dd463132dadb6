"""portal/certificates.py: the qualified-certificate check against certificates our CA
issues (the qualified profile, and variants missing one property each), with OCSP from
the CA served on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyhanko.sign.ades import qualified_asn1

from ca.profiles import Validity
from portal import certificates
from portal.certificates import QualifiedCheck, check_qualified
from tests.support.portal_pki import PortalPki, SoftwareSigner, running_pki, start_pki

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalPki]:
    yield from running_pki(tmp_path_factory.mktemp("portal-pki") / "ca")


def check(pki: PortalPki, signer: SoftwareSigner, *, ocsp: bool = True,
          at: dt.datetime | None = None, roots: list[bytes] | None = None) -> QualifiedCheck:
    result: QualifiedCheck = asyncio.run(check_qualified(
        signer.certificate, signer.chain, trust_roots=roots or [pki.root],
        at=at or dt.datetime.now(dt.UTC), ocsp=ocsp))
    return result


def statements(*entries: dict[str, Any]) -> qualified_asn1.QcStatements:
    return qualified_asn1.QcStatements(list(entries))


COMPLIANCE = {"statement_id": "qc_compliance"}
SSCD = {"statement_id": "qc_sscd"}
ESIGN = {"statement_id": "qc_type",
         "statement_info": qualified_asn1.QcCertificateType(["qct_esign"])}
ESEAL = {"statement_id": "qc_type",
         "statement_info": qualified_asn1.QcCertificateType(["qct_eseal"])}


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa2048"])
@pytest.mark.parametrize("ocsp", [True, False])
def test_the_ca_profile_is_qualified(pki: PortalPki, kind: str, ocsp: bool) -> None:
    signer = pki.issue(kind, "Curie")
    result = check(pki, signer, ocsp=ocsp)
    assert result.qualified and result.reasons == [], result.reasons
    assert "CN=Alice Curie" in result.subject and "Issuing" in result.issuer
    assert result.common_name == "Alice Curie"
    assert result.serial == f"{signer.serial:x}"
    # Issued just now (the suite may have been imported long before this test runs).
    now = dt.datetime.now(dt.UTC)
    assert result.not_before <= now + dt.timedelta(minutes=5) <= result.not_after
    assert result.not_after - result.not_before > dt.timedelta(days=5 * 365 - 2)
    assert result.status == "valid"


def test_a_clock_behind_the_ca_by_seconds_still_gets_a_status(pki: PortalPki) -> None:
    """The portal's clock a minute behind the CA's (skew, or a test's fixed clock): the
    OCSP response the CA just made is current, not "revocation unknown"; an hour behind,
    it is not (the certificate is not even valid yet)."""
    signer = pki.issue("p256", "Skewed")
    behind = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    result = check(pki, signer, ocsp=True, at=behind)
    assert result.qualified and result.status == "valid", result.reasons
    assert not check(pki, signer, ocsp=True,
                     at=behind - dt.timedelta(hours=1)).qualified


def test_revoked_with_ocsp_only(pki: PortalPki) -> None:
    signer = pki.issue("p256", "Revoked")
    pki.revoke(signer.serial)
    result = check(pki, signer, ocsp=True)
    assert not result.qualified and result.reasons == ["revoked"]
    assert result.status == "revoked"
    assert check(pki, signer, ocsp=False).qualified  # no status asked: not known


@pytest.mark.parametrize(("variant", "reasons"), [
    ({"drop": ("qc_statements",)}, ["no-qc-statements"]),
    ({"replace": {"qc_statements": statements(SSCD, ESIGN)}}, ["not-qc-compliant"]),
    ({"replace": {"qc_statements": statements(COMPLIANCE, ESIGN)}}, ["no-qscd"]),
    ({"replace": {"qc_statements": statements(COMPLIANCE, SSCD)}}, ["not-esign"]),
    ({"replace": {"qc_statements": statements(COMPLIANCE, SSCD, ESEAL)}}, ["not-esign"]),
    ({"replace": {"qc_statements": statements(
        COMPLIANCE, SSCD, ESIGN,
        {"statement_id": "qc_cc_legislation",
         "statement_info": qualified_asn1.QcCCLegislationCountryCodes(["US"])})}},
     ["non-eu-legislation"]),
    ({"replace": {"qc_statements": statements()}},
     ["not-qc-compliant", "no-qscd", "not-esign"]),
    ({"replace": {"certificate_policies": [{"policy_identifier": "0.4.0.194112.1.0"}]}},
     ["not-qcp-n-qscd"]),
    ({"drop": ("certificate_policies",)}, ["not-qcp-n-qscd"]),
    ({"replace": {"key_usage": {"digital_signature"}}}, ["no-non-repudiation"]),
    ({"drop": ("key_usage",)}, ["no-non-repudiation"]),
    ({"replace": {"basic_constraints": {"ca": True}}}, ["not-end-entity"]),
])
def test_one_missing_property_one_reason(pki: PortalPki, variant: dict[str, Any],
                                         reasons: list[str]) -> None:
    result = check(pki, pki.issue_variant(**variant))
    assert not result.qualified
    assert result.reasons == reasons


def test_validity(pki: PortalPki) -> None:
    short = Validity(NOW - dt.timedelta(minutes=5), NOW + dt.timedelta(days=1))
    expired = check(pki, pki.issue_variant(validity=short), at=NOW + dt.timedelta(days=2))
    # the path is still ours (checked within the validity): only the dates are wrong
    assert expired.reasons == ["expired"] and expired.status == "expired"
    future = Validity(NOW + dt.timedelta(days=2), NOW + dt.timedelta(days=30))
    assert check(pki, pki.issue_variant(validity=future)).reasons == ["not-yet-valid"]
    signer = pki.issue()
    later = NOW + dt.timedelta(days=5 * 365 + 30)
    assert check(pki, signer, at=later, ocsp=False).reasons == ["expired"]
    earlier = NOW - dt.timedelta(days=1)
    assert check(pki, signer, at=earlier, ocsp=False).reasons == ["not-yet-valid"]


def test_untrusted_issuer(pki: PortalPki, tmp_path: Path) -> None:
    other = start_pki(tmp_path / "other")
    try:
        stranger = other.issue()
        # our root does not know their issuing CA, even when their chain is supplied
        assert check(pki, stranger).reasons == ["untrusted-issuer"]
        # a certificate of ours checked against their root only
        assert check(pki, pki.issue(), roots=[other.root]).reasons == ["untrusted-issuer"]
        # their issuing CA's name on a certificate signed by another of our keys
        forged = pki.issue_variant(issuer="ocsp", register=False)
        assert check(pki, forged, ocsp=False).reasons == ["untrusted-issuer"]
    finally:
        other.stop()


def test_missing_chain_is_untrusted(pki: PortalPki) -> None:
    signer = pki.issue()
    signer.chain = []
    assert check(pki, signer, ocsp=False).reasons == ["untrusted-issuer"]


def test_ocsp_unreachable(tmp_path: Path) -> None:
    pki = start_pki(tmp_path / "ca")
    signer = pki.issue()
    root = pki.root
    pki.stop()
    result = asyncio.run(check_qualified(signer.certificate, signer.chain, trust_roots=[root],
                                         at=dt.datetime.now(dt.UTC), ocsp=True, timeout=2))
    assert result.reasons == ["revocation-unknown"]
    result = asyncio.run(check_qualified(signer.certificate, signer.chain, trust_roots=[root],
                                         at=dt.datetime.now(dt.UTC), ocsp=False))
    assert result.qualified


def test_malformed_input(pki: PortalPki) -> None:
    signer = pki.issue()
    now = dt.datetime.now(dt.UTC)
    for certificate, chain, roots, at in (
            (b"", signer.chain, [pki.root], now),
            (b"junk", signer.chain, [pki.root], now),
            (signer.certificate[:-1], signer.chain, [pki.root], now),
            (signer.certificate, [b"junk"], [pki.root], now),
            (signer.certificate, signer.chain * 5, [pki.root], now),
            (signer.certificate, signer.chain, [], now),
            (signer.certificate, signer.chain, [b"x"], now),
            (signer.certificate, signer.chain, [pki.root], now.replace(tzinfo=None))):
        with pytest.raises(certificates.CertificateMalformed):
            asyncio.run(check_qualified(certificate, chain, trust_roots=roots, at=at,
                                        ocsp=False))


def test_reason_codes_are_a_closed_list() -> None:
    assert len(set(certificates.REASONS)) == len(certificates.REASONS)
    assert all(code == code.lower() and " " not in code for code in certificates.REASONS)


def test_a_certificate_from_elsewhere_makes_no_request(pki: PortalPki) -> None:
    """Its AIA names a server here; an untrusted path is refused before any fetch."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

    hits: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        key = ec.generate_private_key(ec.SECP256R1())
        name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Mallory")])
        now = dt.datetime.now(dt.UTC)
        cert = (cx509.CertificateBuilder().subject_name(name)
                .issuer_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Evil CA")]))
                .public_key(key.public_key()).serial_number(7)
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30))
                .add_extension(cx509.AuthorityInformationAccess([
                    cx509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                            cx509.UniformResourceIdentifier(url + "/ocsp")),
                    cx509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                            cx509.UniformResourceIdentifier(url + "/ca"))]),
                    critical=False)
                .sign(key, hashes.SHA256()))
        result = asyncio.run(check_qualified(
            cert.public_bytes(Encoding.DER), [], trust_roots=[pki.root],
            at=dt.datetime.now(dt.UTC), ocsp=True))
        assert "untrusted-issuer" in result.reasons
        assert hits == []
    finally:
        server.shutdown()
