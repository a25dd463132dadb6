"""PAdES signing with a key on a token: a pyHanko `Signer` whose raw operation runs on
the token's worker; the PDF work (fields, byte ranges, incremental updates, B-T
timestamps) is pyHanko's.

Levels B-B and B-T (a timestamp from the configured TSA), SubFilter
ETSI.CAdES.detached (ETSI EN 319 142-1): signed attributes content-type,
message-digest, ESS signing-certificate-v2 and CMS algorithm protection (RFC 6211),
no signing-time (the time is the signature dictionary's /M).

Speed, for batches (issue 4, Benchmark): most of pyHanko's time per PDF goes into
building CMS structures with asn1crypto, twice (a dry run sizes the placeholder).
Here everything in the CMS that depends only on the signer (certificates, signer
identifier, algorithms, the signing-certificate-v2 attribute) is DER-encoded once per
signer (`CmsTemplate`); per document only the message digest, the signature and the
timestamp change, and the placeholder size is estimated once per signer and level.
`sign_pdfs` also signs a whole batch's hashes in one job on the token's worker.

One authorisation covers a whole batch: the PIN is held for the batch only, and each
signature on a PIN-per-signature key is still preceded by its own VERIFY.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import Any

from asn1crypto import algos, cms, core, tsp, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko_certvalidator.registry import SimpleCertificateStore

from agent.tokens.model import HashAlgorithm, KeyType, Padding, SignatureAlgorithm, Token
from agent.tokens.registry import TokenRegistry

_HASHES = {"sha256": HashAlgorithm.SHA256, "sha384": HashAlgorithm.SHA384,
           "sha512": HashAlgorithm.SHA512}
MAX_PDF_BYTES = 50 * 1024 * 1024
MD_ALGORITHM = "sha256"
_TSA_ATTRIBUTE = "1.2.840.113549.1.9.16.2.14"  # id-aa-signatureTimeStampToken (RFC 3161)


class Level(StrEnum):
    B_B = "B-B"
    B_T = "B-T"


class PdfRefused(Exception):
    """The PDF cannot be signed as it is; the message names the problem."""


@dataclass(frozen=True)
class SignedPdf:
    name: str
    data: bytes


# DER, for the parts that change per document --------------------------------------------


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (X.690 §8.1.3: definite length, short or long form)."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _sequence(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _set_of(parts: Sequence[bytes]) -> bytes:
    """DER SET OF: the encodings in ascending order (X.690 §11.6)."""
    return _der(0x31, b"".join(sorted(parts)))


_MESSAGE_DIGEST_OID = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()


class CmsTemplate:
    """A CAdES detached SignedData (RFC 5652 §5, ETSI EN 319 122-1 baseline B) for one
    signer, with everything that does not depend on the document encoded once."""

    def __init__(self, certificate: x509.Certificate, chain: Sequence[x509.Certificate],
                 key_type: KeyType) -> None:
        self.key_type = key_type
        digest = algos.DigestAlgorithm({"algorithm": MD_ALGORITHM})
        signature = algos.SignedDigestAlgorithm(
            {"algorithm": "sha256_ecdsa" if key_type.is_ec else "sha256_rsa"})
        cert_der = certificate.dump()
        ess = tsp.SigningCertificateV2({"certs": [{
            "cert_hash": hashlib.sha256(cert_der).digest(),  # SHA-256: hashAlgorithm omitted
            "issuer_serial": {"issuer": [x509.GeneralName({"directory_name":
                                                           certificate.issuer})],
                              "serial_number": certificate.serial_number}}]})
        protection = cms.CMSAlgorithmProtection({
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": MD_ALGORITHM,
                                                       "parameters": core.Null()}),
            "signature_algorithm": signature})
        self._fixed_attrs = [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump(),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}).dump(),
            cms.CMSAttribute({"type": "cms_algorithm_protection",
                              "values": [protection]}).dump(),
        ]
        sid = cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": certificate.issuer, "serial_number": certificate.serial_number}})
        self._version = core.Integer(1).dump()
        self._si_head = self._version + sid.dump() + digest.dump()  # SignerInfo up to attrs
        self._si_signature_algorithm = signature.dump()
        certificates = _der(0xA0, b"".join(sorted(
            [cert_der] + [c.dump() for c in chain if c.dump() != cert_der])))
        # SignedData fields before and after signerInfos; detached id-data content.
        self._sd_head = (self._version + _set_of([digest.dump()])
                         + _sequence(core.ObjectIdentifier("1.2.840.113549.1.7.1").dump())
                         + certificates)
        self._content_type = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
        self.max_signature = 2 * ((key_type.size + 7) // 8) + 9 if key_type.is_ec \
            else (key_type.size + 7) // 8

    def signed_attributes(self, document_digest: bytes) -> bytes:
        """The DER SET of signed attributes: what the key signs (RFC 5652 §5.4)."""
        digest = _sequence(_MESSAGE_DIGEST_OID, _set_of([_der(0x04, document_digest)]))
        return _set_of([*self._fixed_attrs, digest])

    def content_info(self, signed_attributes: bytes, signature: bytes,
                     timestamp_token: bytes | None = None) -> bytes:
        """The ContentInfo holding the SignedData, DER-encoded."""
        unsigned = b""
        if timestamp_token is not None:
            attribute = _sequence(core.ObjectIdentifier(_TSA_ATTRIBUTE).dump(),
                                  _set_of([timestamp_token]))
            unsigned = _der(0xA1, attribute)  # [1] IMPLICIT SET OF Attribute
        signer_info = _sequence(
            self._si_head, b"\xa0" + signed_attributes[1:],  # [0] IMPLICIT SET OF
            self._si_signature_algorithm, _der(0x04, signature), unsigned)
        signed_data = _sequence(self._sd_head, _set_of([signer_info]))
        return _sequence(self._content_type, _der(0xA0, signed_data))


# The signer ------------------------------------------------------------------------------


class TokenSigner(signers.Signer):
    """pyHanko's Signer backed by the token layer: CAdES containers from `CmsTemplate`
    (pyHanko's own CMS code for anything else it may ask), raw signatures on the token's
    worker, several at once for a batch."""

    def __init__(self, registry: TokenRegistry, token_id: str, key_id: str,
                 certificate: bytes, chain: list[bytes], key_type: KeyType, pin: str) -> None:
        self._registry = registry
        self._token_id = token_id
        self._key_id = key_id
        self._pin = pin
        self._padding = Padding.ECDSA if key_type.is_ec else Padding.PKCS1V15
        self._key_type = key_type
        cert = x509.Certificate.load(certificate)
        others = [x509.Certificate.load(c) for c in chain]
        store = SimpleCertificateStore.from_certs(others)  # type: ignore[no-untyped-call]
        super().__init__(signing_cert=cert, cert_registry=store)
        self.template = CmsTemplate(cert, others, key_type)
        self._presigned: dict[bytes, bytes] = {}  # SHA-256 of signed attributes -> sig
        self._reserved: dict[str | None, int] = {}  # timestamp URL -> placeholder size
        self._timestampers: dict[str, timestamps.HTTPTimeStamper] = {}

    def timestamper(self, url: str) -> timestamps.HTTPTimeStamper:
        """One per URL and signer: it keeps its dummy response for size estimates."""
        if url not in self._timestampers:
            self._timestampers[url] = timestamps.HTTPTimeStamper(url)
        return self._timestampers[url]

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:  # size estimate only: no token operation for it
            return bytes(self.template.max_signature)
        hash_algorithm = _HASHES.get(digest_algorithm)
        if hash_algorithm is None:
            raise SigningError(f"{digest_algorithm} is not supported")
        digest = hashlib.new(digest_algorithm, data).digest()
        presigned = self._presigned.pop(digest, None) \
            if hash_algorithm is HashAlgorithm.SHA256 else None
        if presigned is not None:
            return presigned
        return (await self.sign_digests([digest], hash_algorithm))[0]

    async def sign_digests(self, digests: Sequence[bytes],
                           hash_algorithm: HashAlgorithm = HashAlgorithm.SHA256
                           ) -> list[bytes]:
        """Several digests in one job on the token's worker (no other operation's
        APDUs between them)."""
        algorithm = SignatureAlgorithm(self._padding, hash_algorithm)
        key_id, pin, wanted = self._key_id, self._pin, list(digests)

        def sign(token: Token) -> list[bytes]:
            return [token.sign_digest(key_id, d, algorithm, pin=pin) for d in wanted]

        signatures: list[bytes] = await self._registry.call(self._token_id, sign)
        return signatures

    def presign(self, digests: Sequence[bytes], signatures: Sequence[bytes]) -> None:
        self._presigned.update(zip(digests, signatures, strict=True))

    async def async_sign(self, data_digest: bytes, digest_algorithm: str,
                         dry_run: bool = False, use_pades: bool = False,
                         timestamper: Any = None,
                         signed_attr_settings: PdfCMSSignedAttributes | None = None,
                         is_pdf_sig: bool = True, encap_content_info: Any = None
                         ) -> cms.ContentInfo:
        """PAdES containers from the template; anything else by pyHanko's own code."""
        if (not use_pades or digest_algorithm != MD_ALGORITHM or not is_pdf_sig
                or encap_content_info is not None
                or (signed_attr_settings is not None
                    and (signed_attr_settings.cades_signed_attrs is not None
                         or signed_attr_settings.adobe_revinfo_attr is not None))):
            return await super().async_sign(
                data_digest, digest_algorithm, dry_run=dry_run, use_pades=use_pades,
                timestamper=timestamper, signed_attr_settings=signed_attr_settings,
                is_pdf_sig=is_pdf_sig, encap_content_info=encap_content_info)
        attributes = self.template.signed_attributes(data_digest)
        signature = await self.async_sign_raw(attributes, MD_ALGORITHM, dry_run=dry_run)
        token: bytes | None = None
        if timestamper is not None:
            if dry_run:
                response = await timestamper.async_dummy_response(MD_ALGORITHM)
            else:  # RFC 3161 / CAdES: the imprint is a hash of the signature value
                response = await timestamper.async_timestamp(
                    hashlib.sha256(signature).digest(), MD_ALGORITHM)
            token = response.dump()
        return cms.ContentInfo.load(self.template.content_info(attributes, signature, token))

    async def reserved_bytes(self, timestamper: Any) -> int:
        """The placeholder for /Contents, estimated once per level: pyHanko's rule
        (a dry-run container, hex-encoded, plus half again for TSA variation)."""
        key = getattr(timestamper, "url", None) if timestamper is not None else None
        if key not in self._reserved:
            dry = await self.async_sign(bytes(32), MD_ALGORITHM, dry_run=True,
                                        use_pades=True, timestamper=timestamper)
            length = len(dry.dump()) * 2
            self._reserved[key] = length + 2 * (length // 4)
        return self._reserved[key]


async def token_signer(registry: TokenRegistry, credential_id: str, pin: str) -> TokenSigner:
    token_id, _, key_id = credential_id.rpartition("/")
    credentials = await registry.call(token_id, lambda t: t.credentials())
    credential = next((c for c in credentials if c.id == key_id), None)
    if credential is None or credential.certificate is None:
        raise PdfRefused(f"{credential_id}: no key with a certificate")
    return TokenSigner(registry, token_id, key_id, credential.certificate,
                       list(credential.chain), credential.key_type, pin)


# PDFs ------------------------------------------------------------------------------------


_PDF_ERRORS = (PdfError, SigningError, ValueError, KeyError, TypeError, IndexError)


def _refusal(exc: Exception) -> PdfRefused:
    return PdfRefused(f"cannot sign this PDF: {type(exc).__name__}: {exc}"[:300])


@dataclass
class _Prepared:
    digest: Any  # pyhanko PreparedByteRangeDigest
    document: PdfTBSDocument
    output: Any


async def _prepare(signer: TokenSigner, data: bytes, level: Level,
                   timestamp_url: str | None, field_name: str) -> _Prepared:
    """Parse, add the signature field and placeholder, digest the byte range."""
    if len(data) > MAX_PDF_BYTES:
        raise PdfRefused("the PDF is larger than 50 MiB")
    if level is Level.B_T and not timestamp_url:
        raise PdfRefused("PAdES B-T needs a timestamp URL")
    try:
        writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
        if writer.prev.encrypted:
            raise PdfRefused("the PDF is encrypted; qsign does not sign encrypted PDFs")
        timestamper = (signer.timestamper(timestamp_url)
                       if level is Level.B_T and timestamp_url else None)
        pdf_signer = signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name=field_name, md_algorithm=MD_ALGORITHM,
                                         subfilter=fields.SigSeedSubFilter.PADES),
            signer=signer, timestamper=timestamper)
        reserved = await signer.reserved_bytes(timestamper)
        digest, document, output = await pdf_signer.async_digest_doc_for_signing(
            writer, bytes_reserved=reserved)
    except PdfRefused:
        raise
    except _PDF_ERRORS as exc:
        raise _refusal(exc) from exc
    return _Prepared(digest, document, output)


async def _finish(prepared: _Prepared) -> bytes:
    try:
        done = await prepared.document.perform_signature(
            prepared.digest.document_digest, PdfCMSSignedAttributes())
        await done.post_signature_processing(prepared.output)
    except _PDF_ERRORS as exc:
        raise _refusal(exc) from exc
    output = prepared.output
    output.seek(0)
    return bytes(output.read())


async def sign_pdf(signer: TokenSigner, data: bytes, *, level: Level = Level.B_B,
                   timestamp_url: str | None = None, field_name: str = "Signature1") -> bytes:
    """One PDF in, the signed PDF out; PdfRefused for what cannot be signed."""
    return await _finish(await _prepare(signer, data, level, timestamp_url, field_name))


async def sign_pdfs(signer: TokenSigner, documents: Sequence[bytes], *,
                    level: Level = Level.B_B, timestamp_url: str | None = None,
                    field_name: str = "Signature1") -> list[bytes]:
    """A batch under one authorisation, all or nothing (PdfRefused names the first
    document that cannot be signed, and nothing is signed then): every document is
    prepared first, then the token signs all their signed attributes in one job."""
    prepared = []
    for index, data in enumerate(documents, 1):
        try:
            prepared.append(await _prepare(signer, data, level, timestamp_url, field_name))
        except PdfRefused as exc:
            raise PdfRefused(f"document {index}: {exc}") from exc
    attributes = [hashlib.sha256(signer.template.signed_attributes(
        p.digest.document_digest)).digest() for p in prepared]
    signer.presign(attributes, await signer.sign_digests(attributes))
    return [await _finish(p) for p in prepared]


Progress = Callable[[int, int, str], None]
