"""agent.pades with a key held in software behind the registry's `call` surface (the
card and SoftHSM2 paths are in tests/integration): the CAdES containers pyHanko builds
around the token's signatures validate in pyHanko for P-256, P-384 and RSA keys; a batch
signs in one token job; a bad document refuses the whole batch, naming it, before
anything is signed; a refused PIN fails the whole batch; a batch and a single PDF signed
at once stay apart; a signer's last batch wipes its PIN right after its signatures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from io import BytesIO
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from agent.pades import PdfRefused, TokenSigner, sign_pdf, sign_pdfs
from agent.tokens.errors import InvalidPin, NotAuthenticated
from agent.tokens.model import KeyType, Padding, SignatureAlgorithm, Token
from tests.support.pdfs import blank_pdf
from tests.support.provision import CertIssuer

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class SoftwareToken:
    def __init__(self, key: Key) -> None:
        self.key = key
        self.signatures = 0

    def sign_digest(self, key_id: str, digest: bytes, algorithm: SignatureAlgorithm,
                    pin: str | None = None) -> bytes:
        if pin != "123456":
            raise InvalidPin(2)  # as the token layer does: the PIN checked per signature
        assert len(digest) == 32
        self.signatures += 1
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            assert algorithm.padding is Padding.ECDSA
            return self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        assert algorithm.padding is Padding.PKCS1V15
        return self.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))

    sign_digests = Token.sign_digests  # the interface's: each signature checks the PIN


class Registry:
    def __init__(self, token: SoftwareToken) -> None:
        self.token = token
        self.jobs = 0

    async def call(self, token_id: str, operation: Callable[[Any], Any]) -> Any:
        self.jobs += 1
        return operation(self.token)


KEYS: dict[KeyType, Callable[[], Key]] = {
    KeyType.EC_P256: lambda: ec.generate_private_key(ec.SECP256R1()),
    KeyType.EC_P384: lambda: ec.generate_private_key(ec.SECP384R1()),
    KeyType.RSA_2048: lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


def _signer(key_type: KeyType) -> tuple[TokenSigner, Registry, CertIssuer]:
    key = KEYS[key_type]()
    issuer = CertIssuer()
    cert = issuer.certify(key.public_key(), "pades unit")  # type: ignore[arg-type]
    registry = Registry(SoftwareToken(key))
    signer = TokenSigner(registry, "soft", "01",  # type: ignore[arg-type]
                         cert.public_bytes(Encoding.DER), [], key_type, "123456")
    return signer, registry, issuer


async def _valid(data: bytes, issuer: CertIssuer) -> None:
    signature = PdfFileReader(BytesIO(data)).embedded_signatures[0]
    trust = asn1_x509.Certificate.load(issuer.root_certificate())
    status = await async_validate_pdf_signature(signature,
                                                ValidationContext(trust_roots=[trust]))
    assert status.intact and status.valid, status.pretty_print_details()
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"


@pytest.mark.parametrize("key_type", list(KeyType))
def test_single_and_batch_validate(key_type: KeyType) -> None:
    async def main() -> None:
        signer, registry, issuer = _signer(key_type)
        await _valid(await sign_pdf(signer, blank_pdf(1)), issuer)
        assert registry.jobs == 1
        documents = [blank_pdf(1), blank_pdf(3), blank_pdf(2)]
        signed = await sign_pdfs(signer, documents)
        assert registry.jobs == 2, "a batch is one token job"
        assert registry.token.signatures == 4
        for data in signed:
            await _valid(data, issuer)

    asyncio.run(main())


def test_a_bad_document_refuses_the_batch_before_signing() -> None:
    async def main() -> None:
        signer, registry, _ = _signer(KeyType.EC_P256)
        with pytest.raises(PdfRefused, match="document 2"):
            await sign_pdfs(signer, [blank_pdf(1), b"%PDF-1.7 not a PDF", blank_pdf(1)])
        with pytest.raises(PdfRefused, match=r"document 1: .*encrypted"):
            await sign_pdfs(signer, [blank_pdf(1, encrypt_with="secret")])
        assert registry.token.signatures == 0

    asyncio.run(main())


def test_a_refused_pin_fails_the_whole_batch_in_one_job() -> None:
    """The token's error reaches every document of the batch; none waits forever."""
    async def main() -> None:
        key = KEYS[KeyType.EC_P256]()
        cert = CertIssuer().certify(key.public_key(), "pades unit")  # type: ignore[arg-type]
        registry = Registry(SoftwareToken(key))
        signer = TokenSigner(registry, "soft", "01",  # type: ignore[arg-type]
                             cert.public_bytes(Encoding.DER), [], KeyType.EC_P256, "999999")
        with pytest.raises(InvalidPin):
            await asyncio.wait_for(sign_pdfs(signer, [blank_pdf(1), blank_pdf(2)]), 60)
        assert registry.jobs == 1 and registry.token.signatures == 0

    asyncio.run(main())


def test_a_batch_and_a_single_pdf_at_once_stay_apart() -> None:
    """A document signed beside a batch, with the same signer, is not taken into it."""
    async def main() -> None:
        signer, registry, issuer = _signer(KeyType.EC_P256)
        batch, single = await asyncio.gather(
            sign_pdfs(signer, [blank_pdf(1), blank_pdf(2)]), sign_pdf(signer, blank_pdf(3)))
        assert registry.jobs == 2 and registry.token.signatures == 3
        for data in [*batch, single]:
            await _valid(data, issuer)

    asyncio.run(main())


def test_a_last_batch_wipes_the_pin_right_after_its_signatures() -> None:
    """With forget_pin, the signer's PIN buffer is zero as soon as the batch's token job
    ends (before pyHanko writes the CMS), and also when the batch is refused before any
    signature; the signer then signs nothing more."""
    async def main() -> None:
        signer, registry, issuer = _signer(KeyType.EC_P256)
        buffer = signer._pin  # the buffer itself is what must be zero
        assert buffer == bytearray(b"123456")
        after_jobs: list[bytes] = []
        call = registry.call

        async def watching(token_id: str, operation: Callable[[Any], Any]) -> Any:
            result = await call(token_id, operation)
            after_jobs.append(bytes(buffer))
            return result

        registry.call = watching  # type: ignore[method-assign]
        signed = await sign_pdfs(signer, [blank_pdf(1), blank_pdf(2)], forget_pin=True)
        assert after_jobs == [bytes(6)], "the PIN outlived the batch's token job"
        for data in signed:
            await _valid(data, issuer)
        with pytest.raises(NotAuthenticated):
            await sign_pdf(signer, blank_pdf(3))
        assert registry.token.signatures == 2

        refused, _, _ = _signer(KeyType.EC_P256)
        kept = refused._pin
        with pytest.raises(PdfRefused, match="document 2"):
            await sign_pdfs(refused, [blank_pdf(1), b"%PDF-1.7 not a PDF"], forget_pin=True)
        assert kept == bytes(6)

    asyncio.run(main())
