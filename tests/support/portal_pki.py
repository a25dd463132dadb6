"""The portal's PKI in tests: our own CA (ca/) initialised in a temp directory and served
on loopback (OCSP, CRL, TSA) from a thread, qualified certificates issued through its
registry for software keys, variants that are not qualified for the certificate checks,
and pyHanko as the relying party that validates the signed PDFs."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import keys as asn1_keys
from asn1crypto import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt.permissions import StandardPermissions
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from ca.authority import Authority, CaConfig
from ca.enrolment import issue_qualified
from ca.keys import CaKey, signing_choice
from ca.profiles import (
    ID_QCS_PKIXQCSYNTAX_V2,
    QCP_N_QSCD,
    Validity,
    key_identifier,
    natural_person_name,
    random_serial,
    sign_certificate,
    spki_sha256,
)
from ca.registry import CertificateRecord, Registry
from ca.service import create_app
from portal.pades import Level, Validation
from tests.support.ca_process import serve_ca
from tests.support.ports import free_port
from tests.support.threaded_app import ThreadedApp, serve_in_thread

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KEY_KINDS = ("p256", "p384", "rsa2048")


def new_key(kind: str) -> PrivateKey:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa2048":
        return rsa.generate_private_key(65537, 2048)
    raise ValueError(kind)


def spki_of(key: PrivateKey) -> asn1_keys.PublicKeyInfo:
    return asn1_keys.PublicKeyInfo.load(key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


@dataclass
class SoftwareSigner:
    """A key in memory with a certificate the test CA issued: signs prepared digests as
    the agent would (ECDSA: DER; RSA: PKCS#1 v1.5), over the signed attributes."""

    key: PrivateKey
    certificate: bytes
    chain: list[bytes]
    serial: int

    def sign(self, signed_attributes: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(signed_attributes, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(signed_attributes, padding.PKCS1v15(), hashes.SHA256())


@dataclass
class PortalPki:
    """The CA: issuance here (its registry), its HTTP service in a thread of this
    process (tests) or in a `qsign ca serve` process of its own (benchmarks)."""

    directory: Path
    authority: Authority
    registry: Registry
    base: str
    _served: ThreadedApp | None = field(default=None, repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def root(self) -> bytes:
        return bytes(self.authority.root.dump())

    @property
    def issuing(self) -> bytes:
        return bytes(self.authority.issuing.dump())

    @property
    def chain(self) -> list[bytes]:
        return [self.issuing, self.root]

    def validation(self, **overrides: Any) -> Validation:
        values: dict[str, Any] = {"trust_roots": [self.root],
                                  "timestamp_url": f"{self.base}/tsa"}
        values.update(overrides)
        return Validation(**values)

    # Issuance ---------------------------------------------------------------------------

    def issue(self, kind: str = "p256", surname: str = "Martin") -> SoftwareSigner:
        """A qualified certificate (QCP-n-qscd, the CA's own profile) for a new key,
        through the registry, so OCSP and the CRL know it."""
        key = new_key(kind)
        record = self.certify(spki_of(key), surname=surname)
        return SoftwareSigner(key, record.der, self.chain, record.serial)

    def certify(self, public_key: asn1_keys.PublicKeyInfo, *, given_name: str = "Alice",
                surname: str = "Martin") -> CertificateRecord:
        """The CA's qualified profile for `public_key` (e.g. one made on a card)."""
        subject = natural_person_name(given_name=given_name, surname=surname,
                                      serial_number=f"IDCFR-{secrets.token_hex(4)}",
                                      country="FR")

        def build(serial: int) -> x509.Certificate:
            return issue_qualified(self.authority, serial, subject, public_key)

        return self.registry.issue(build, new_serial=random_serial,
                                   evidence_id=secrets.token_hex(16),
                                   spki_sha256=spki_sha256(public_key))

    def issue_variant(self, kind: str = "p256", *, drop: tuple[str, ...] = (),
                      replace: dict[str, Any] | None = None,
                      validity: Validity | None = None, issuer: str = "issuing",
                      register: bool = True) -> SoftwareSigner:
        """A certificate like the qualified profile, with extensions dropped (by
        asn1crypto name) or replaced, another validity, or signed by another CA key."""
        key = new_key(kind)
        public_key = spki_of(key)
        template = x509.Certificate.load(self.issue(kind).certificate)
        extensions = []
        for extension in template["tbs_certificate"]["extensions"]:
            name = extension["extn_id"].native
            if name in drop:
                continue
            if replace and name in replace:
                extensions.append({"extn_id": name, "critical": extension["critical"].native,
                                   "extn_value": replace[name]})
                continue
            if name == "key_identifier":
                extensions.append({"extn_id": name, "critical": False,
                                   "extn_value": key_identifier(public_key)})
                continue
            extensions.append(extension)
        issuer_cert = self.authority.certificates[issuer]
        issuer_key: CaKey = self.authority.keys[issuer]
        validity = validity or Validity.starting_now(30)
        subject = natural_person_name(given_name="Bob", surname="Variant",
                                      serial_number=f"IDCFR-{secrets.token_hex(4)}",
                                      country="FR")

        def build(serial: int) -> x509.Certificate:
            tbs = x509.TbsCertificate({
                "version": "v3", "serial_number": serial,
                "signature": {"algorithm": signing_choice(issuer_key)[1]},
                "issuer": issuer_cert.subject,
                "validity": {"not_before": _time(validity.not_before),
                             "not_after": _time(validity.not_after)},
                "subject": subject, "subject_public_key_info": public_key,
                "extensions": extensions,
            })
            return sign_certificate(tbs, issuer_key)

        if register:
            record = self.registry.issue(build, new_serial=random_serial,
                                         evidence_id=secrets.token_hex(16),
                                         spki_sha256=spki_sha256(public_key))
            return SoftwareSigner(key, record.der, self.chain, record.serial)
        cert = build(random_serial())
        return SoftwareSigner(key, cert.dump(), self.chain, cert.serial_number)

    def revoke(self, serial: int) -> CertificateRecord:
        record = self.registry.revoke(serial, "key_compromise")
        return record

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(30)
            self._process = None
        if self._served is not None:
            self._served.stop()
            self._served = None


def _time(when: dt.datetime) -> x509.Time:
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    return x509.Time({"utc_time": when} if 1950 <= when.year < 2050
                     else {"general_time": when})


def start_pki(directory: Path, *, process: bool = False) -> PortalPki:
    """Initialise a CA in `directory` and serve it on a free loopback port: from a
    thread here, or (`process`) as `qsign ca serve` on the same directory and registry."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    authority = Authority.init(directory, CaConfig(base_url=base))
    registry = Registry.open(None, directory)
    if process:
        child = serve_ca(directory, port)
        return PortalPki(directory, authority, registry, base, _process=child)
    served = serve_in_thread(create_app(authority, registry), port, "test-ca")
    return PortalPki(directory, authority, registry, base, _served=served)


def running_pki(directory: Path) -> Iterator[PortalPki]:
    """Fixture body: `yield from running_pki(tmp_path / 'ca')`."""
    pki = start_pki(directory)
    try:
        yield pki
    finally:
        pki.stop()


def owner_encrypted_pdf(*, allow_form_filling: bool = True, mac: bool = False) -> bytes:
    """One blank page, AES-256 with an owner password and the empty user password (it
    opens for anyone; the permissions say what is allowed), with or without the
    ISO/TS 32004 integrity MAC."""
    writer = PdfFileWriter()
    writer.insert_page(generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject(
            [generic.NumberObject(n) for n in (0, 0, 595, 842)]),
        generic.NameObject("/Resources"): generic.DictionaryObject(),
        generic.NameObject("/Contents"): writer.add_object(
            generic.StreamObject(stream_data=b"BT ET")),
    }))
    perms = StandardPermissions.allow_everything()
    if not allow_form_filling:
        perms &= ~(StandardPermissions.ALLOW_FORM_FILLING
                   | StandardPermissions.ALLOW_ANNOTS_FORM_FILLING)
    writer.encrypt("owner-secret", "", perms=perms, pdf_mac=mac)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


# Relying party ------------------------------------------------------------------------------


@dataclass
class Validated:
    statuses: list[PdfSignatureStatus]
    has_dss: bool
    revisions: int


async def validate_pdf(pdf: bytes, trust_roots: list[bytes], *, offline: bool = True,
                       other_certs: list[bytes] = ()) -> Validated:  # type: ignore[assignment]
    """Every embedded signature with pyHanko, trusting `trust_roots` only. Offline: no
    fetching, revocation data from the DSS only, hard-fail for certificates that declare
    OCSP or a CRL: as a verifier without network sees the file. `other_certs`: what a
    verifier knows besides the file (e.g. the issuing CA from a trusted list)."""
    reader = PdfFileReader(BytesIO(pdf))
    if reader.encrypted:
        reader.decrypt("")  # owner-password-only files open with the empty user password
    has_dss = "/DSS" in reader.root
    statuses = []
    backend = AIOHttpFetcherBackend()
    try:
        for signature in reader.embedded_regular_signatures:  # B-LTA's timestamps apart
            kwargs: dict[str, Any] = {
                "trust_roots": [x509.Certificate.load(r) for r in trust_roots],
                "other_certs": [x509.Certificate.load(c) for c in other_certs],
                "revocation_mode": "hard-fail", "allow_fetching": not offline}
            if offline and has_dss:
                context = DocumentSecurityStore.read_dss(reader).as_validation_context(kwargs)
            elif offline:
                context = ValidationContext(**kwargs, ocsps=[], crls=[])
            else:
                context = ValidationContext(**kwargs, fetcher_backend=backend)
            statuses.append(await async_validate_pdf_signature(signature, context))
    finally:
        await backend.close()
    return Validated(statuses, has_dss, reader.xrefs.total_revisions)


__all__ = ["ID_QCS_PKIXQCSYNTAX_V2", "KEY_KINDS", "QCP_N_QSCD", "Level", "PortalPki",
           "SoftwareSigner", "Validated", "running_pki", "start_pki", "validate_pdf"]
