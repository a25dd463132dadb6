"""PAdES signing with a key on a token: a pyHanko `Signer` whose one raw operation
(`async_sign_raw`) runs on the token's worker; CMS and PDF work is pyHanko's.

Levels B-B and B-T (a timestamp from the configured TSA). One authorisation covers
a whole batch: the PIN is held for the batch only, and each signature on a
PIN-per-signature key is still preceded by its own VERIFY.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO

from asn1crypto import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import signers, timestamps
from pyhanko.sign.general import SigningError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from agent.tokens.model import HashAlgorithm, Padding, SignatureAlgorithm, Token
from agent.tokens.registry import TokenRegistry

_HASHES = {"sha256": HashAlgorithm.SHA256, "sha384": HashAlgorithm.SHA384,
           "sha512": HashAlgorithm.SHA512}
MAX_PDF_BYTES = 50 * 1024 * 1024


class Level(StrEnum):
    B_B = "B-B"
    B_T = "B-T"


class PdfRefused(Exception):
    """The PDF cannot be signed as it is; the message names the problem."""


@dataclass(frozen=True)
class SignedPdf:
    name: str
    data: bytes


class TokenSigner(signers.Signer):
    """pyHanko's one abstract method, backed by the token layer."""

    def __init__(self, registry: TokenRegistry, token_id: str, key_id: str,
                 certificate: bytes, chain: list[bytes], key_is_ec: bool, pin: str) -> None:
        self._registry = registry
        self._token_id = token_id
        self._key_id = key_id
        self._pin = pin
        self._padding = Padding.ECDSA if key_is_ec else Padding.PKCS1V15
        self._estimate = 80 if key_is_ec else 512
        store = SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
            [x509.Certificate.load(c) for c in chain])
        super().__init__(signing_cert=x509.Certificate.load(certificate), cert_registry=store)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:  # size estimate only: no token operation for it
            return bytes(self._estimate)
        hash_algorithm = _HASHES.get(digest_algorithm)
        if hash_algorithm is None:
            raise SigningError(f"{digest_algorithm} is not supported")
        digest = hashlib.new(digest_algorithm, data).digest()
        algorithm = SignatureAlgorithm(self._padding, hash_algorithm)
        key_id, pin = self._key_id, self._pin

        def sign(token: Token) -> bytes:
            return token.sign_digest(key_id, digest, algorithm, pin=pin)

        return await self._registry.call(self._token_id, sign)


async def token_signer(registry: TokenRegistry, credential_id: str, pin: str) -> TokenSigner:
    token_id, _, key_id = credential_id.rpartition("/")
    credentials = await registry.call(token_id, lambda t: t.credentials())
    credential = next((c for c in credentials if c.id == key_id), None)
    if credential is None or credential.certificate is None:
        raise PdfRefused(f"{credential_id}: no key with a certificate")
    return TokenSigner(registry, token_id, key_id, credential.certificate,
                       list(credential.chain), credential.key_type.is_ec, pin)


async def sign_pdf(signer: TokenSigner, data: bytes, *, level: Level = Level.B_B,
                   timestamp_url: str | None = None, field_name: str = "Signature1") -> bytes:
    """One PDF in, the signed PDF out; PdfRefused for what cannot be signed."""
    if len(data) > MAX_PDF_BYTES:
        raise PdfRefused("the PDF is larger than 50 MiB")
    if level is Level.B_T and not timestamp_url:
        raise PdfRefused("PAdES B-T needs a timestamp URL")
    try:
        writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
        if writer.prev.encrypted:
            raise PdfRefused("the PDF is encrypted; qsign does not sign encrypted PDFs")
        timestamper = (timestamps.HTTPTimeStamper(timestamp_url) if level is Level.B_T
                       else None)
        pdf_signer = signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name=field_name, md_algorithm="sha256"),
            signer=signer, timestamper=timestamper)
        output = BytesIO()
        await pdf_signer.async_sign_pdf(writer, output=output)
    except PdfRefused:
        raise
    except (PdfError, SigningError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise PdfRefused(f"cannot sign this PDF: {type(exc).__name__}: {exc}"[:300]) from exc
    return output.getvalue()


Progress = Callable[[int, int, str], None]
