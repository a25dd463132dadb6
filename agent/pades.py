"""PAdES signing with a key on a token: a pyHanko `Signer` that implements only
pyHanko's public extension point, `async_sign_raw`, which has the token sign on its
worker with the PIN presented for that signature. The PDF and CMS work (fields, byte
ranges, incremental updates, the CMS SignedData, B-T timestamps) is pyHanko's.

Levels B-B and B-T (a timestamp from the configured TSA), SubFilter
ETSI.CAdES.detached (ETSI EN 319 142-1): signed attributes content-type,
message-digest, ESS signing-certificate-v2 and CMS algorithm protection (RFC 6211),
no signing-time (the time is the signature dictionary's /M), given to pyHanko through
its public `SignedAttributeProviderSpec`.

One authorisation covers a batch (`sign_pdfs`): every document is prepared first, then
all are signed together; each document's `async_sign_raw` waits until every document
of the batch has asked, and the token makes all the signatures in one job on its
worker (`Token.sign_digests`: no other operation's commands between them, the PIN
presented in that job and the token locked again right after it; PKCS#11 logs in once
for the job, PIV verifies before each signature). The signer holds the PIN in a buffer
that the batch wipes right after that job. A single PDF (`sign_pdf`) is its own job.

pyHanko is pinned to one minor version in pyproject.toml: its CMS and PDF behaviour is
what the signatures here are made of, so an upgrade is a deliberate, tested change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import Any

from asn1crypto import algos, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.attributes import (
    CMSAlgorithmProtectionProvider,
    CMSAttributeProvider,
    SignedAttributeProviderSpec,
    SigningCertificateV2Provider,
)
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko_certvalidator.registry import SimpleCertificateStore

from agent.issuers import IssuerChain
from agent.tokens.errors import NotAuthenticated
from agent.tokens.model import HashAlgorithm, KeyType, Padding, SignatureAlgorithm, Token
from agent.tokens.registry import TokenRegistry
from agent.tokens.secret import wipe

_HASHES = {"sha256": HashAlgorithm.SHA256, "sha384": HashAlgorithm.SHA384,
           "sha512": HashAlgorithm.SHA512}
MAX_PDF_BYTES = 50 * 1024 * 1024
MD_ALGORITHM = "sha256"


class Level(StrEnum):
    B_B = "B-B"
    B_T = "B-T"


class PdfRefused(Exception):
    """The PDF cannot be signed as it is; the message names the problem."""


@dataclass(frozen=True)
class SignedPdf:
    name: str
    data: bytes


class _EncodedOnce(CMSAttributeProvider):
    """One of pyHanko's attribute providers whose value is the same for every signature
    of a signer (dry run or not), encoded once and read back from its DER each time:
    asn1crypto encodes a structure built in Python again on every read, which was most
    of a PDF signature's time."""

    def __init__(self, provider: CMSAttributeProvider) -> None:
        self.attribute_type = provider.attribute_type
        self._provider = provider
        self._value: Any = None

    async def build_attr_value(self, dry_run: bool = False) -> Any:
        if self._value is None:
            value = await self._provider.build_attr_value(  # type: ignore[no-untyped-call]
                dry_run=dry_run)
            self._value = type(value), value.dump()
        spec, der = self._value
        return spec.load(der)


class PadesSignedAttributes(SignedAttributeProviderSpec):
    """The signed attributes besides content-type and message-digest (which pyHanko
    always adds): ESS signing-certificate-v2 (ETSI EN 319 122-1 §5.2.2) and CMS
    algorithm protection (RFC 6211); no signing-time (ETSI EN 319 142-1 §6.3)."""

    def __init__(self, signer: signers.Signer) -> None:
        assert signer.signing_cert is not None
        self._signer = signer
        self._certificate = _EncodedOnce(SigningCertificateV2Provider(signer.signing_cert))
        self._protection: dict[str, _EncodedOnce] = {}

    def signed_attr_providers(self, data_digest: bytes, digest_algorithm: str
                              ) -> Iterable[CMSAttributeProvider]:
        if digest_algorithm not in self._protection:
            self._protection[digest_algorithm] = _EncodedOnce(CMSAlgorithmProtectionProvider(
                digest_algo=digest_algorithm,
                signature_algo=self._signer.get_signature_mechanism_for_digest(
                    digest_algorithm)))
        return self._certificate, self._protection[digest_algorithm]


# The batch a document being signed belongs to, in that document's task only.
_BATCH: ContextVar[_SignatureBatch | None] = ContextVar("qsign_pades_batch", default=None)


class TokenSigner(signers.Signer):
    """pyHanko's Signer backed by the token layer: `async_sign_raw` signs on the token's
    worker (`TokenRegistry.call`), never on the event loop, with the PIN given for
    that job; a dry run (pyHanko's size estimate) answers a dummy of the largest
    signature's length without touching the token. The PIN is held in a bytearray until
    `forget_pin` (or a `sign_pdfs(..., forget_pin=True)` batch) wipes it."""

    def __init__(self, registry: TokenRegistry, token_id: str, key_id: str,
                 certificate: bytes, chain: list[bytes], key_type: KeyType, pin: str) -> None:
        cert = x509.Certificate.load(certificate)
        others = [x509.Certificate.load(c) for c in chain]
        store = SimpleCertificateStore.from_certs(others)  # type: ignore[no-untyped-call]
        # The mechanism for MD_ALGORITHM, given once: pyHanko would build it for every use.
        mechanism = algos.SignedDigestAlgorithm.load(algos.SignedDigestAlgorithm(
            {"algorithm": f"{MD_ALGORITHM}_{'ecdsa' if key_type.is_ec else 'rsa'}"}).dump())
        super().__init__(signing_cert=cert, cert_registry=store, signature_mechanism=mechanism)
        self.signed_attr_prov_spec = PadesSignedAttributes(self)
        self._registry = registry
        self._token_id = token_id
        self._key_id = key_id
        self._pin: bytearray | None = bytearray(pin, "utf-8")
        self._padding = Padding.ECDSA if key_type.is_ec else Padding.PKCS1V15
        # DER Ecdsa-Sig-Value at its longest (two integers with a sign byte), or the modulus.
        self._max_signature = (2 * (key_type.size // 8) + 9 if key_type.is_ec
                               else (key_type.size + 7) // 8)
        self._timestampers: dict[str, timestamps.HTTPTimeStamper] = {}
        self._bytes_reserved: dict[str | None, int] = {}  # timestamp URL -> /Contents size

    def bytes_reserved(self, timestamp_url: str | None) -> int | None:
        """The /Contents placeholder pyHanko sized for this signer's first document at
        this level; None until then. Its estimate depends on the signer, the digest and
        the TSA's dummy token only, so it holds for every later document."""
        return self._bytes_reserved.get(timestamp_url)

    def reserved(self, timestamp_url: str | None, digest: PreparedByteRangeDigest) -> None:
        """Keep the placeholder size pyHanko chose (the reserved region without '<>')."""
        size = digest.reserved_region_end - digest.reserved_region_start - 2
        self._bytes_reserved.setdefault(timestamp_url, size)

    def timestamper(self, url: str) -> timestamps.HTTPTimeStamper:
        """One per URL and signer: it keeps its dummy response for size estimates."""
        if url not in self._timestampers:
            self._timestampers[url] = timestamps.HTTPTimeStamper(url)
        return self._timestampers[url]

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        """The raw signature of `data` hashed with `digest_algorithm` (pyHanko's
        `Signer.async_sign_raw`): ECDSA (DER) or RSASSA-PKCS1-v1_5 per the key."""
        if dry_run:
            return bytes(self._max_signature)
        hash_algorithm = _HASHES.get(digest_algorithm)
        if hash_algorithm is None:
            raise SigningError(f"{digest_algorithm} is not supported")
        digest = hashlib.new(digest_algorithm, data).digest()
        batch = _BATCH.get()
        if batch is not None and batch.signer is self:
            return await batch.sign(digest, hash_algorithm)
        return (await self.sign_digests([(digest, hash_algorithm)]))[0]

    def forget_pin(self) -> None:
        """Wipe the PIN: this signer makes no signature after it."""
        pin, self._pin = self._pin, None
        if pin is not None:
            wipe(pin)

    async def sign_digests(self, digests: Sequence[tuple[bytes, HashAlgorithm]], *,
                           last: bool = False) -> list[bytes]:
        """Several digests in one job on the token's worker (`Token.sign_digests`: no
        other operation's commands between them, the PIN presented for this job and the
        token locked again right after it). With `last`, the job wipes the PIN right after
        its last signature, however it ends."""
        key_id, pin, padding = self._key_id, self._pin, self._padding
        if pin is None:
            raise NotAuthenticated("the PIN for these signatures was wiped")
        wanted = list(digests)

        def sign(token: Token) -> list[bytes]:
            try:
                text = pin.decode()  # the token layer takes a str; it lives for this job
                return token.sign_digests(
                    key_id, [(digest, SignatureAlgorithm(padding, hash_algorithm))
                             for digest, hash_algorithm in wanted], pin=text)
            finally:
                if last:
                    self.forget_pin()

        signatures: list[bytes] = await self._registry.call(self._token_id, sign)
        return signatures


class _BatchAbandoned(PdfRefused):
    """Another document of the batch failed before its signature: none is signed."""


class _SignatureBatch:
    """The signatures of one `sign_pdfs` call: each document's `async_sign_raw` waits
    until every document has asked, then the token makes them all in one job. A
    document that fails before asking abandons the batch: nothing is signed."""

    def __init__(self, signer: TokenSigner, documents: int, *, last: bool) -> None:
        self.signer = signer
        self._documents = documents
        self._last = last  # the signer's PIN is wiped right after the batch's signatures
        self._asked: list[tuple[bytes, HashAlgorithm, asyncio.Future[bytes]]] = []
        self._abandoned = False
        self._job: asyncio.Task[None] | None = None

    async def sign(self, digest: bytes, hash_algorithm: HashAlgorithm) -> bytes:
        if self._abandoned:
            raise _BatchAbandoned("another document of the batch cannot be signed")
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._asked.append((digest, hash_algorithm, answer))
        if len(self._asked) == self._documents:
            # A task of its own: a cancelled waiter cannot leave the others waiting.
            self._job = asyncio.create_task(self._sign_all())
        return await answer

    def leave(self) -> None:
        """A document of the batch failed; if it had not asked yet, abandon the batch."""
        if self._job is not None:
            return
        self._abandoned = True
        for _, _, answer in self._asked:
            if not answer.done():
                answer.set_exception(_BatchAbandoned(
                    "another document of the batch cannot be signed"))

    async def _sign_all(self) -> None:
        asked = self._asked
        try:
            signatures = await self.signer.sign_digests([(d, h) for d, h, _ in asked],
                                                        last=self._last)
        except asyncio.CancelledError:
            for _, _, answer in asked:
                answer.cancel()
            raise
        except Exception as exc:  # every document gets the token's error
            for _, _, answer in asked:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, _, answer), signature in zip(asked, signatures, strict=True):
            if not answer.done():
                answer.set_result(signature)


async def token_signer(registry: TokenRegistry, credential_id: str, pin: str,
                       issuers: IssuerChain | None = None) -> TokenSigner:
    """The signer for `credential_id`; with `issuers`, the CMS carries the certificate's
    intermediates completed from the agent's CA (what the token holds may stop at the
    signer's), so a validator builds the path from a trust anchor alone (EN 319 142-1
    §5.2.2: the signed data should hold the certificates up to a trust anchor)."""
    token_id, _, key_id = credential_id.rpartition("/")
    credentials = await registry.call(token_id, lambda t: t.credentials())
    credential = next((c for c in credentials if c.id == key_id), None)
    if credential is None or credential.certificate is None:
        raise PdfRefused(f"{credential_id}: no key with a certificate")
    chain = list(credential.chain)
    if issuers is not None:
        completed = await issuers.complete(credential.certificate, chain)
        chain = [c for c in completed[1:] if c not in chain] + chain
    return TokenSigner(registry, token_id, key_id, credential.certificate,
                       chain, credential.key_type, pin)


# PDFs ------------------------------------------------------------------------------------


_PDF_ERRORS = (PdfError, SigningError, ValueError, KeyError, TypeError, IndexError)


def _refusal(exc: Exception) -> PdfRefused:
    return PdfRefused(f"cannot sign this PDF: {type(exc).__name__}: {exc}"[:300])


@dataclass
class _Prepared:
    digest: PreparedByteRangeDigest
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
        tsa = timestamp_url if level is Level.B_T else None
        pdf_signer = signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name=field_name, md_algorithm=MD_ALGORITHM,
                                         subfilter=fields.SigSeedSubFilter.PADES),
            signer=signer, timestamper=None if tsa is None else signer.timestamper(tsa))
        # pyHanko sizes the placeholder with a dry run for the first document only.
        digest, document, output = await pdf_signer.async_digest_doc_for_signing(
            writer, bytes_reserved=signer.bytes_reserved(tsa))
        signer.reserved(tsa, digest)
    except PdfRefused:
        raise
    except _PDF_ERRORS as exc:
        raise _refusal(exc) from exc
    return _Prepared(digest, document, output)


async def _finish(prepared: _Prepared) -> bytes:
    """pyHanko signs (through `TokenSigner.async_sign_raw`) and writes the CMS."""
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
                    field_name: str = "Signature1", forget_pin: bool = False) -> list[bytes]:
    """A batch under one authorisation, all or nothing (PdfRefused names the first
    document that cannot be signed, and nothing is signed then): every document is
    prepared first, then all are signed, their signatures in one token job. With
    `forget_pin`, the batch is the signer's last: its PIN is wiped in that job right
    after the last signature, or as the batch ends when no signature is made."""
    try:
        return await _sign_batch(signer, documents, level, timestamp_url, field_name,
                                 forget_pin)
    finally:
        if forget_pin:
            signer.forget_pin()


async def _sign_batch(signer: TokenSigner, documents: Sequence[bytes], level: Level,
                      timestamp_url: str | None, field_name: str, last: bool) -> list[bytes]:
    prepared = []
    for index, data in enumerate(documents, 1):
        try:
            prepared.append(await _prepare(signer, data, level, timestamp_url, field_name))
        except PdfRefused as exc:
            raise PdfRefused(f"document {index}: {exc}") from exc
    batch = _SignatureBatch(signer, len(prepared), last=last)

    async def member(document: _Prepared) -> bytes:
        _BATCH.set(batch)  # this task's context: its async_sign_raw joins the batch
        try:
            return await _finish(document)
        except BaseException:
            batch.leave()
            raise

    results = await asyncio.gather(*map(member, prepared), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise next((f for f in failures if not isinstance(f, _BatchAbandoned)), failures[0])
    return [r for r in results if isinstance(r, bytes)]


Progress = Callable[[int, int, str], None]
