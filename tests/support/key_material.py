"""Finding key material in a shipped tree (SECURITY #13: never a shared private key).

PEM blocks are matched whole (BEGIN, a base64 body, the matching END), so a library's
code that only names a PEM header (cryptography's OpenSSH parser) is not a key.
Key and certificate containers are also found by their file extension, for DER.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]{3,40})-----\r?\n((?:[A-Za-z0-9+/=:,\- ]*\r?\n){1,}?)"
    rb"-----END \1-----")
KEY_EXTENSIONS = frozenset({".key", ".p12", ".pfx", ".p8", ".pk8", ".jks", ".keystore"})
CERT_EXTENSIONS = frozenset({".pem", ".crt", ".cer", ".der"})
TEST_CORPORA = frozenset({"tests", "test", "testing", "testdata", "test_data"})
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass
class Finding:
    path: str
    what: str


@dataclass
class KeyMaterial:
    """What a tree holds: private keys, key containers, certificate files and blocks."""

    private_keys: list[Finding] = field(default_factory=list)
    containers: list[Finding] = field(default_factory=list)
    certificate_files: list[str] = field(default_factory=list)
    pem_blocks: list[Finding] = field(default_factory=list)
    certificates: list[tuple[str, x509.Certificate]] = field(default_factory=list)


def in_test_corpus(path: str) -> bool:
    return bool(TEST_CORPORA & set(PurePosixPath(path).parts[:-1]))


def scan_file(path: str, data: bytes, found: KeyMaterial) -> None:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in KEY_EXTENSIONS:
        found.containers.append(Finding(path, suffix))
    if suffix in CERT_EXTENSIONS:
        found.certificate_files.append(path)
        if suffix in (".der", ".cer") and not data.startswith(b"-----"):
            with contextlib.suppress(ValueError):  # not every .der is a certificate
                found.certificates.append((path, x509.load_der_x509_certificate(data)))
    if b"-----BEGIN " not in data:
        return
    for match in PEM_BLOCK.finditer(data):
        label = match.group(1).decode()
        body = re.sub(rb"[^A-Za-z0-9+/=]", b"", match.group(2))
        if len(body) < 40:  # a header and footer in code, not key material
            continue
        found.pem_blocks.append(Finding(path, label))
        if "PRIVATE KEY" in label:
            found.private_keys.append(Finding(path, label))
        elif label == "CERTIFICATE":
            with contextlib.suppress(ValueError):  # counted as a block all the same
                found.certificates.append(
                    (path, x509.load_pem_x509_certificate(match.group(0))))


def scan_tree(root: Path, *, skip_test_corpora: bool) -> KeyMaterial:
    found = KeyMaterial()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        relative = path.relative_to(root).as_posix()
        if skip_test_corpora and in_test_corpus(relative):
            continue
        with warnings.catch_warnings():  # old trust anchors bend RFC 5280: read them anyway
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            scan_file(relative, path.read_bytes(), found)
    return found


def loopback_names(certificate: x509.Certificate) -> list[str]:
    """The loopback hosts a certificate names (a localhost TLS server's certificate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _loopback_names(certificate)


def _loopback_names(certificate: x509.Certificate) -> list[str]:
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
             if isinstance(a.value, str)]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        names += san.value.get_values_for_type(x509.DNSName)
        names += [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
    loopback: list[str] = []
    for name in names:
        host = name.lower().rstrip(".")
        try:
            if ipaddress.ip_address(host).is_loopback:
                loopback.append(name)
            continue
        except ValueError:
            pass
        if host in LOOPBACK_NAMES or host.endswith(".localhost"):
            loopback.append(name)
    return loopback
