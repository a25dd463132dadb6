"""The CMS side of a PAdES signature: the signed attributes the token signs (their
digest), the check of the token's value against the certificate, and the SignedData
container around it with the signature-time-stamp (RFC 5652, EN 319 142-1 §5.2-5.3)."""

from __future__ import annotations

import hashlib
import math

import aiohttp
from asn1crypto import cms, core, x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from pyhanko.sign import signers, timestamps
from pyhanko_certvalidator.registry import SimpleCertificateStore

from portal.pades.errors import CertificateRejected, SignatureInvalid, TrustServiceError
from portal.pades.prepared import HASH, Prepared
from portal.pades.trust import Validation, http_session


def signed_attributes(document_digest: bytes, certificate: x509.Certificate) -> bytes:
    """The CMS signed attributes of a PAdES baseline signature, DER (EN 319 142-1 §5.2):
    contentType id-data, messageDigest, and signingCertificateV2 (RFC 5035 §3) naming
    the signer's certificate by its SHA-256 hash (hashAlgorithm left at its DEFAULT
    sha256, so absent in DER) and issuer and serial. No signingTime: the time is the /M
    of the signature dictionary. Encoded here directly: asn1crypto re-encoding the
    issuer name costs ~10 ms a document."""
    issuer = _tlv(0x30, _tlv(0xA4, certificate.issuer.dump()))  # GeneralNames: [4] Name
    issuer_serial = _tlv(0x30, issuer + _integer(certificate.serial_number))
    cert_id = _tlv(0x30, _tlv(0x04, hashlib.sha256(certificate.dump()).digest())
                   + issuer_serial)
    signing_certificate = _tlv(0x30, _tlv(0x30, cert_id))
    attributes = [
        _attribute(_CONTENT_TYPE, _oid(_ID_DATA)),
        _attribute(_MESSAGE_DIGEST, _tlv(0x04, document_digest)),
        _attribute(_SIGNING_CERTIFICATE_V2, signing_certificate),
    ]
    return _tlv(0x31, b"".join(sorted(attributes)))  # DER SET OF: sorted encodings


_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
_ID_DATA = "1.2.840.113549.1.7.1"


def _attribute(oid: str, value: bytes) -> bytes:
    return _tlv(0x30, _oid(oid) + _tlv(0x31, value))


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def verify_signature(certificate: x509.Certificate, signed_attributes: bytes,
                     signature: bytes) -> bytes:
    """Check `signature` over `signed_attributes` (SHA-256) with the certificate's key;
    return the value as CMS carries it (ECDSA: DER, RFC 5753 §2.1.1)."""
    if not isinstance(signature, bytes | bytearray) or not signature:
        raise SignatureInvalid("the signature is empty")
    signature = bytes(signature)
    try:
        public_key = serialization.load_der_public_key(certificate.public_key.dump())
    except ValueError as exc:
        raise CertificateRejected("the certificate's key is not usable",
                                  code="unsupported-key") from exc
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            value = _ecdsa_der(signature, public_key.curve.key_size)
            public_key.verify(value, signed_attributes, ec.ECDSA(hashes.SHA256()))
            return value
        if isinstance(public_key, rsa.RSAPublicKey):
            if len(signature) != (public_key.key_size + 7) // 8:
                raise SignatureInvalid("the RSA signature is not the modulus' length")
            public_key.verify(signature, signed_attributes, padding.PKCS1v15(),
                              hashes.SHA256())
            return signature
    except InvalidSignature as exc:
        raise SignatureInvalid("the signature does not verify with the certificate's key"
                               ) from exc
    raise CertificateRejected("only ECDSA and RSA keys are supported", code="unsupported-key")


def _ecdsa_der(signature: bytes, curve_bits: int) -> bytes:
    """Canonical DER for an ECDSA value given as DER or as IEEE P1363 r||s."""
    coordinate = math.ceil(curve_bits / 8)
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        if len(signature) != 2 * coordinate:
            raise SignatureInvalid("not an ECDSA signature value (DER or r||s)") from None
        r = int.from_bytes(signature[:coordinate], "big")
        s = int.from_bytes(signature[coordinate:], "big")
    der = encode_dss_signature(r, s)
    if der != signature and len(signature) != 2 * coordinate:
        raise SignatureInvalid("the ECDSA signature is not in DER (X.690 §10)")
    return der


def signature_size(certificate: x509.Certificate) -> int:
    """The largest DER signature value the key can produce (for the size reserve)."""
    key = certificate.public_key
    if key.algorithm == "rsa":
        return math.ceil(int(key.bit_size) / 8)
    coordinate = math.ceil(int(key.bit_size) / 8)
    return 2 * (coordinate + 3) + 3  # SEQUENCE { INTEGER r, INTEGER s }, each maybe 0x00-led


async def signed_container(prepared: Prepared, certificate: x509.Certificate,
                           chain: list[x509.Certificate], value: bytes,
                           validation: Validation, session: aiohttp.ClientSession | None
                           ) -> cms.ContentInfo:
    """The CMS SignedData around the token's checked `value` over the prepared signed
    attributes, with the signature-time-stamp for B-T and up."""
    signer = signers.ExternalSigner(
        certificate, SimpleCertificateStore.from_certs(chain),  # type: ignore[no-untyped-call]
        signature_value=value)
    attributes = cms.CMSAttributes.load(prepared.signed_attributes)
    try:
        async with http_session(session, validation,
                                needed=prepared.level.timestamped) as http:
            timestamper = (timestamps.HTTPTimeStamper(validation.timestamp_url,
                                                      timeout=validation.timeout,
                                                      session=http)
                           if prepared.level.timestamped else None)
            container = await signer.async_sign_prescribed_attributes(
                HASH, attributes, timestamper=timestamper)
    except timestamps.TimestampRequestError as exc:
        raise TrustServiceError(f"the timestamp service failed: {exc}",
                                code="timestamp-unavailable") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise TrustServiceError(f"the timestamp service is unreachable: {exc}",
                                code="timestamp-unavailable") from exc
    return container
