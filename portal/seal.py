"""The portal's electronic seal: the key and certificate its validation service seals the
PDF reports with (validation/pdf_report.py). Configured in `[validation]`
(portal/validation_config.py), else found in STATE_DIR/seal/ (key.pem 0600,
certificate.pem, chain.pem), where `make_seal` puts a key certified by a CA at setup
(`qsign demo`: the local CA, ca/seal.py). No seal: the reports are not sealed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from asn1crypto import pem, x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.sign import signers

from ground.files import write_atomically
from portal.config import PortalConfig
from portal.signing import load_roots
from validation.pdf_report import ReportSeal

SEAL_DIR = "seal"
SEAL_NAME = "qsign validation service"

# DER SubjectPublicKeyInfo in; the DER certificate and its issuing chain out.
Certify = Callable[[bytes], tuple[bytes, list[bytes]]]


def _paths(config: PortalConfig) -> tuple[Path, Path, tuple[Path, ...]]:
    own = config.state_dir / SEAL_DIR
    chosen = config.validation
    chain = chosen.seal_chain or ((own / "chain.pem",) if (own / "chain.pem").exists()
                                  else ())
    return (chosen.seal_key or own / "key.pem",
            chosen.seal_certificate or own / "certificate.pem", chain)


def load_seal(config: PortalConfig) -> ReportSeal | None:
    """The seal when its key and certificate are there; B-T through the portal's
    time-stamping service when one is configured, B-LT when trust roots are too."""
    key, certificate, chain = _paths(config)
    if not (key.exists() and certificate.exists()):
        return None
    signer = signers.SimpleSigner.load(  # type: ignore[no-untyped-call]
        str(key), str(certificate), ca_chain_files=[str(p) for p in chain])
    if signer is None:
        raise ValueError(f"{key}, {certificate}: not a usable seal key and certificate")
    roots = tuple(x509.Certificate.load(der) for der in load_roots(config.trust_roots))
    return ReportSeal(signer, config.timestamp_url, SEAL_NAME, roots)


def make_seal(state_dir: Path, certify: Certify) -> Path:
    """A P-256 key in STATE_DIR/seal/ (kept when there), certified by `certify`; the
    directory."""
    directory = state_dir / SEAL_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = directory / "key.pem"
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        write_atomically(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    certificate, chain = certify(spki)
    write_atomically(directory / "certificate.pem", pem.armor("CERTIFICATE", certificate),
                     mode=0o644)
    write_atomically(directory / "chain.pem",
                     b"".join(pem.armor("CERTIFICATE", der) for der in chain), mode=0o644)
    return directory
