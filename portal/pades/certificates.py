"""The signer's certificate and chain as PAdES takes them: bounded DER, parsed once per
distinct certificate, EC on the NIST curves or RSA of 2048 bits and more."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from asn1crypto import x509

from portal.pades.errors import CertificateRejected

MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_CHAIN = 8


def load_certificate(der: bytes) -> x509.Certificate:
    if not isinstance(der, bytes | bytearray) or not der:
        raise ValueError("a certificate must be non-empty DER bytes")
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise ValueError("the certificate is too large")
    return _parsed_certificate(bytes(der))


@functools.lru_cache(maxsize=128)
def _parsed_certificate(der: bytes) -> x509.Certificate:
    """Parsed once per distinct DER: a batch of documents shares one signer and chain.
    (The objects are only read, never changed.)"""
    try:
        cert = x509.Certificate.load(der, strict=True)
        _ = cert.native  # parse it all now: malformed parts fail here
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a DER X.509 certificate ({type(exc).__name__})") from exc
    return cert


def signer_certificates(certificate: bytes, chain: Sequence[bytes]
                         ) -> tuple[x509.Certificate, list[x509.Certificate]]:
    try:
        signer_cert = load_certificate(certificate)
    except ValueError as exc:
        raise CertificateRejected(f"certificate: {exc}", code="malformed") from exc
    if not isinstance(chain, Sequence) or isinstance(chain, bytes | str) or len(chain) > MAX_CHAIN:
        raise CertificateRejected(f"chain: a list of at most {MAX_CHAIN} certificates",
                                  code="malformed")
    chain_certs = []
    for index, der in enumerate(chain):
        try:
            chain_certs.append(load_certificate(der))
        except ValueError as exc:
            raise CertificateRejected(f"chain[{index}]: {exc}", code="malformed") from exc
    key = signer_cert.public_key
    if key.algorithm == "ec":
        if key.curve[1] not in ("secp256r1", "secp384r1", "secp521r1"):
            raise CertificateRejected(f"EC curve {key.curve[1]} is not supported",
                                      code="unsupported-key")
    elif key.algorithm == "rsa":
        if key.bit_size < 2048:
            raise CertificateRejected("RSA keys below 2048 bits are not accepted",
                                      code="unsupported-key")
    else:
        raise CertificateRejected(f"{key.algorithm} keys are not supported",
                                  code="unsupported-key")
    return signer_cert, chain_certs


def unique_certs(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.dump(), cert)
    return list(seen.values())
