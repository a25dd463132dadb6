"""The CA's own trusted list for demo and test deployments (ETSI TS 119 612 v2.2.1): its
issuing CA as a CA/QC service and its TSA as a TSA/QTST service, signed (XAdES enveloped,
TS 119 612 §5.7.1) by a demo scheme-operator key the CA keeps in its directory; and a
small list of trusted lists (TS 119 612 §5.3.13 pointers) naming it, so validators
exercise the LOTL path too.

    DIR/trusted-list/operator.key   0600, the demo scheme operator's key (EC P-256)
    DIR/trusted-list/operator.pem   its self-signed certificate (what validators configure)

It is no EU Member State list: its scheme name says so; the territory is the CA's
country because TS 119 612 §5.3.10 allows only ISO 3166-1 codes there."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from lxml import etree
from signxml.algorithms import SignatureMethod
from signxml.xades.xades import XAdESSigner

from ca.authority import Authority
from ca.profiles import QCP_N_QSCD
from ground.files import write_atomically

TSL = "http://uri.etsi.org/02231/v2#"
TSLX = "http://uri.etsi.org/02231/v2/additionaltypes#"
URI = "http://uri.etsi.org/TrstSvc"
TSL_TAG = "http://uri.etsi.org/19612/TSLTag"
TYPE_GENERIC = f"{URI}/TrustedList/TSLType/EUgeneric"
TYPE_LOTL = f"{URI}/TrustedList/TSLType/EUlistofthelists"
RULES_COMMON = f"{URI}/TrustedList/schemerules/EUcommon"
RULES_LOTL = f"{URI}/TrustedList/schemerules/EUlistofthelists"
STATUS_DETERMINATION = f"{URI}/TrustedList/StatusDetn/EUappropriate"
CA_QC = f"{URI}/Svctype/CA/QC"
TSA_QTST = f"{URI}/Svctype/TSA/QTST"
GRANTED = f"{URI}/TrustedList/Svcstatus/granted"
WITHDRAWN = f"{URI}/TrustedList/Svcstatus/withdrawn"
FOR_ESIGNATURES = f"{URI}/TrustedList/SvcInfoExt/ForeSignatures"
TSL_MIME = "application/vnd.etsi.tsl+xml"
ECC = "http://uri.etsi.org/TrstSvc/SvcInfoExt/eSigDir-1999-93-EC-TrustedList/#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
# TS 119 612 §5.5.9.2.1 qualifiers for CA/QC services.
QUALIFIERS = frozenset({
    "QCWithSSCD", "QCNoSSCD", "QCSSCDStatusAsInCert", "QCWithQSCD", "QCNoQSCD",
    "QCQSCDStatusAsInCert", "QCQSCDManagedOnBehalf", "QCForLegalPerson", "QCForESig",
    "QCForESeal", "QCForWSA", "NotQualified", "QCStatement"})
# ETSI TS 119 612 Annex E: id-tsl-kp-tslSigning, the scheme operator's signing purpose.
TSL_SIGNING = ObjectIdentifier("0.4.0.2231.3.0")
DIRECTORY = "trusted-list"
NEXT_UPDATE = dt.timedelta(days=180)


@dataclass(frozen=True)
class SchemeOperator:
    """The demo scheme operator: a key and a self-signed certificate in the CA directory."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def of(cls, authority: Authority) -> SchemeOperator:
        """The CA's scheme operator, made on first use."""
        folder = authority.directory / DIRECTORY
        key_path, cert_path = folder / "operator.key", folder / "operator.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not an EC key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        config = authority.config
        name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, config.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.organization),
            x509.NameAttribute(NameOID.COMMON_NAME,
                               f"{config.name} Trusted List Scheme Operator (demo)")])
        now = authority.now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=5 * 365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([TSL_SIGNING]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        write_atomically(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), 0o600)
        write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(key, cert)


def _el(parent: etree._Element, tag: str, text: str | None = None, ns: str = TSL,
        **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _names(parent: etree._Element, tag: str, value: str, child: str = "Name") -> None:
    _el(_el(parent, tag), child, value, **{"{http://www.w3.org/XML/1998/namespace}lang": "en"})


def _uris(parent: etree._Element, tag: str, *values: str) -> None:
    holder = _el(parent, tag)
    for value in values:
        _el(holder, "URI", value, **{"{http://www.w3.org/XML/1998/namespace}lang": "en"})


def _time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(cert: asn1_x509.Certificate | x509.Certificate) -> str:
    der = (cert.public_bytes(serialization.Encoding.DER) if isinstance(cert, x509.Certificate)
           else cert.dump())
    return base64.b64encode(der).decode()


def _address(parent: etree._Element, tag: str, authority: Authority) -> None:
    address = _el(parent, tag)
    postal = _el(_el(address, "PostalAddresses"), "PostalAddress",
                 **{"{http://www.w3.org/XML/1998/namespace}lang": "en"})
    _el(postal, "StreetAddress", "-")
    _el(postal, "Locality", "-")
    _el(postal, "CountryName", authority.config.country)
    _uris(address, "ElectronicAddress", authority.config.base_url)


def _scheme_information(root: etree._Element, authority: Authority, tsl_type: str,
                        rules: str, issued: dt.datetime, location: str) -> etree._Element:
    """TS 119 612 §5.3: the list's own header."""
    config = authority.config
    info = _el(root, "SchemeInformation")
    _el(info, "TSLVersionIdentifier", "5")
    _el(info, "TSLSequenceNumber", str(int(issued.timestamp())))
    _el(info, "TSLType", tsl_type)
    _names(info, "SchemeOperatorName", f"{config.organization} demo scheme operator")
    _address(info, "SchemeOperatorAddress", authority)
    _names(info, "SchemeName", f"{config.country}: {config.name} demo trusted list "
           "(not an EU Member State list)")
    _uris(info, "SchemeInformationURI", f"{config.base_url.rstrip('/')}/docs/cps")
    _el(info, "StatusDeterminationApproach", STATUS_DETERMINATION)
    _uris(info, "SchemeTypeCommunityRules", rules)
    _el(info, "SchemeTerritory", config.country)
    _el(_el(info, "PolicyOrLegalNotice"), "TSLLegalNotice",
        "Demo and test use only.", **{"{http://www.w3.org/XML/1998/namespace}lang": "en"})
    _el(info, "HistoricalInformationPeriod", "65535")
    return info


def _finish(info: etree._Element, issued: dt.datetime, location: str) -> None:
    _el(info, "ListIssueDateTime", _time(issued))
    _el(_el(info, "NextUpdate"), "dateTime", _time(issued + NEXT_UPDATE))
    _uris(info, "DistributionPoints", location)


def _qualifications(info: etree._Element, qualifiers: Sequence[str]) -> None:
    """TS 119 612 §5.5.9.2 Qualifications: `qualifiers` (e.g. QCNoQSCD) apply to the
    certificates issued under QCP-n-qscd, overriding their own QC statements."""
    extension = _el(info, "Extension", Critical="true")
    element = _el(_el(extension, "Qualifications", ns=ECC), "QualificationElement", ns=ECC)
    holder = _el(element, "Qualifiers", ns=ECC)
    for qualifier in qualifiers:
        _el(holder, "Qualifier", ns=ECC, uri=f"{URI}/TrustedList/SvcInfoExt/{qualifier}")
    policies = _el(_el(element, "CriteriaList", ns=ECC, **{"assert": "atLeastOne"}),
                   "PolicySet", ns=ECC)
    _el(_el(policies, "PolicyIdentifier", ns=ECC), "Identifier", QCP_N_QSCD, ns=XADES)


def _service(services: etree._Element, service_type: str, name: str,
             cert: asn1_x509.Certificate, since: dt.datetime,
             withdrawn_at: dt.datetime | None, esig: bool,
             qualifiers: Sequence[str] = ()) -> None:
    """TS 119 612 §5.5 (current status) and §5.6 (history): granted since `since`; with
    `withdrawn_at`, withdrawn since then and granted before it in the history."""
    service = _el(services, "TSPService")
    info = _el(service, "ServiceInformation")
    _el(info, "ServiceTypeIdentifier", service_type)
    _names(info, "ServiceName", name)
    _el(_el(_el(info, "ServiceDigitalIdentity"), "DigitalId"), "X509Certificate", _b64(cert))
    _el(info, "ServiceStatus", WITHDRAWN if withdrawn_at else GRANTED)
    _el(info, "StatusStartingTime", _time(withdrawn_at or since))
    if esig:
        extension = _el(_el(info, "ServiceInformationExtensions"), "Extension",
                        Critical="false")
        # TS 119 612 §5.5.9.4: the service issues qualified certificates for e-signatures.
        _el(_el(extension, "AdditionalServiceInformation"), "URI", FOR_ESIGNATURES,
            **{"{http://www.w3.org/XML/1998/namespace}lang": "en"})
        if qualifiers:
            _qualifications(extension.getparent(), qualifiers)
    if withdrawn_at:
        past = _el(_el(service, "ServiceHistory"), "ServiceHistoryInstance")
        _el(past, "ServiceTypeIdentifier", service_type)
        _names(past, "ServiceName", name)
        _el(_el(_el(past, "ServiceDigitalIdentity"), "DigitalId"), "X509Certificate",
            _b64(cert))
        _el(past, "ServiceStatus", GRANTED)
        _el(past, "StatusStartingTime", _time(since))


def _sign(root: etree._Element, operator: SchemeOperator) -> bytes:
    """XAdES-BES enveloped signature over the whole list (TS 119 612 §5.7.1)."""
    # Inclusive C14N: signxml's exclusive C14N digests SignedProperties differently on
    # verification (signxml 5.2).
    signer = XAdESSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256,
                         c14n_algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315")
    signed = signer.sign(root, key=operator.key, cert=[operator.certificate])
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def trusted_list(authority: Authority, *, location: str | None = None,
                 granted_since: dt.datetime | None = None,
                 withdrawn_at: dt.datetime | None = None,
                 qualifiers: Sequence[str] = (),
                 issued: dt.datetime | None = None) -> bytes:
    """The CA's trusted list, signed by its scheme operator. The CA/QC service is granted
    since `granted_since` (default: the issuing certificate's notBefore), and withdrawn at
    `withdrawn_at` when given (for validators' tests: signatures made after that are not
    QES); `qualifiers` (TS 119 612 §5.5.9.2 names, e.g. QCNoQSCD) override what its
    certificates say of themselves."""
    unknown = [q for q in qualifiers if q not in QUALIFIERS]
    if unknown:
        raise ValueError(f"unknown qualifier(s) {unknown}; known: {sorted(QUALIFIERS)}")
    config = authority.config
    issued = issued or authority.now()
    location = location or f"{config.base_url.rstrip('/')}/tl.xml"
    since = granted_since or authority.issuing.not_valid_before
    root = etree.Element(f"{{{TSL}}}TrustServiceStatusList", {"TSLTag": TSL_TAG,
                         "Id": "TrustServiceStatusList"}, nsmap={None: TSL})
    info = _scheme_information(root, authority, TYPE_GENERIC, RULES_COMMON, issued, location)
    _finish(info, issued, location)
    provider = _el(_el(root, "TrustServiceProviderList"), "TrustServiceProvider")
    tsp = _el(provider, "TSPInformation")
    _names(tsp, "TSPName", config.organization)
    _address(tsp, "TSPAddress", authority)
    _uris(tsp, "TSPInformationURI", f"{config.base_url.rstrip('/')}/docs/cps")
    services = _el(provider, "TSPServices")
    _service(services, CA_QC, f"{config.name} Issuing", authority.issuing, since,
             withdrawn_at, esig=True, qualifiers=qualifiers)
    _service(services, TSA_QTST, f"{config.name} Timestamping",
             authority.certificates["tsa"], authority.certificates["tsa"].not_valid_before,
             None, esig=False)
    return _sign(root, SchemeOperator.of(authority))


def list_of_lists(authority: Authority, pointers: list[tuple[str, str, bytes]], *,
                  location: str | None = None, issued: dt.datetime | None = None) -> bytes:
    """A list of trusted lists (TS 119 612 §5.3.13 PointersToOtherTSL), signed by the
    CA's scheme operator: each pointer is (where the list lives, its territory, the PEM
    certificate that signs it)."""
    issued = issued or authority.now()
    location = location or f"{authority.config.base_url.rstrip('/')}/lotl.xml"
    root = etree.Element(f"{{{TSL}}}TrustServiceStatusList", {"TSLTag": TSL_TAG,
                         "Id": "TrustServiceStatusList"}, nsmap={None: TSL, "tslx": TSLX})
    info = _scheme_information(root, authority, TYPE_LOTL, RULES_LOTL, issued, location)
    others = _el(info, "PointersToOtherTSL")
    for where, territory, pem in pointers:
        cert = x509.load_pem_x509_certificate(pem)
        pointer = _el(others, "OtherTSLPointer")
        _el(_el(_el(_el(pointer, "ServiceDigitalIdentities"), "ServiceDigitalIdentity"),
                "DigitalId"), "X509Certificate", _b64(cert))
        _el(pointer, "TSLLocation", where)
        extra = _el(pointer, "AdditionalInformation")
        _el(_el(extra, "OtherInformation"), "TSLType", TYPE_GENERIC)
        _el(_el(extra, "OtherInformation"), "SchemeTerritory", territory)
        _el(_el(extra, "OtherInformation"), "MimeType", TSL_MIME, ns=TSLX)
        _uris(_el(extra, "OtherInformation"), "SchemeTypeCommunityRules", RULES_COMMON)
    _finish(info, issued, location)
    return _sign(root, SchemeOperator.of(authority))


def write_trusted_list(authority: Authority, out: Path, **kwargs: dt.datetime | str | None
                       ) -> Path:
    data = trusted_list(authority, **kwargs)  # type: ignore[arg-type]
    write_atomically(out, data, 0o644)
    return out
