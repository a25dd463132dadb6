"""The CA's directory: configuration, certificates and keys, trust anchors.

    DIR/ca.toml                     configuration (see `CaConfig`)
    DIR/certs/{root,issuing,ocsp,tsa}.pem
    DIR/certs/superseded/{ocsp,tsa}-SERIAL.pem   service certificates re-issued at start
    DIR/keys/{root,issuing,ocsp,tsa}.key   0600, when keys live in files
    DIR/hsm.pin                     0600, when keys live in a PKCS#11 token
    DIR/trust/manufacturers/*.pem   roots whose device attestations prove a QSCD key
    DIR/trust/identity/*.pem        identity services whose evidence names a person
    DIR/registry.sqlite             the registry (unless --db names PostgreSQL)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509

from ca.keys import CaKey, CaKeyError, FileKey, Pkcs11Key, generate_pkcs11_key
from ca.profiles import (
    PublicationPoints,
    Validity,
    ca_certificate,
    ca_issuers_urls,
    service_certificate,
)
from ground.files import write_atomically

log = logging.getLogger(__name__)

ROLES = ("root", "issuing", "ocsp", "tsa")
# The CA's own operational certificates: their purpose, name and lifetime in days.
SERVICES = {"ocsp": ("ocsp_signing", "OCSP Responder", 2 * 365),
            "tsa": ("time_stamping", "Timestamping", 6 * 365)}
SUPERSEDED = "superseded"  # under DIR/certs
# The project's own OID arc (ITU-T X.667 UUID arc); deployments may set their own.
QSIGN_ARC = "2.25.3389953017702704020579972310105094812"
QSIGN_TSA_POLICY = QSIGN_ARC + ".1.1"
CONFIG_FILE = "ca.toml"
PIN_FILE = "hsm.pin"


class ConfigError(ValueError):
    """The CA configuration is missing, malformed, or names an unknown key."""


@dataclass(frozen=True)
class CaConfig:
    name: str = "qsign Qualified CA"
    organization: str = "qsign"
    country: str = "FR"
    base_url: str = "http://127.0.0.1:8790"
    validity_days: int = 5 * 365 + 1  # five years of issued certificates (incl. a leap day)
    pds_language: str = "en"
    tsa_policy: str = QSIGN_TSA_POLICY
    ocsp_validity_minutes: int = 60
    crl_validity_hours: int = 24
    key_store: str = "file"  # "file" or "pkcs11"
    pkcs11_module: str = ""
    token_label: str = ""

    @classmethod
    def from_toml(cls, text: str, source: str) -> CaConfig:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        section = raw.pop("ca", None)
        if raw:
            raise ConfigError(f"{source}: unknown section(s) {sorted(raw)}")
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: missing [ca] section")
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown key ca.{key}")
            expected = int if known[key] == "int" else str
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(f"{source}: ca.{key} must be {expected.__name__}")
            values[key] = value
        config = cls(**values)
        if config.key_store not in ("file", "pkcs11"):
            raise ConfigError(f"{source}: ca.key_store must be 'file' or 'pkcs11'")
        return config

    def to_toml(self) -> str:
        lines = ["[ca]"]
        for f in fields(self):
            value = getattr(self, f.name)
            lines.append(f"{f.name} = {value}" if isinstance(value, int)
                         else f'{f.name} = "{value}"')
        return "\n".join(lines) + "\n"

    @property
    def points(self) -> PublicationPoints:
        base = self.base_url.rstrip("/")
        return PublicationPoints(
            crl_url=f"{base}/crl", ocsp_url=f"{base}/ocsp",
            ca_issuers_url=f"{base}/certs/issuing.cer", cps_url=f"{base}/docs/cps",
            pds_url=f"{base}/docs/pds", pds_language=self.pds_language)


@dataclass
class Authority:
    directory: Path
    config: CaConfig
    certificates: dict[str, x509.Certificate]
    keys: dict[str, CaKey]
    manufacturer_roots: list[x509.Certificate]
    identity_certificates: list[x509.Certificate]
    # Service certificates replaced by a re-issue, still valid: the OCSP responder
    # answers for them, since tokens made before carry them.
    superseded: list[x509.Certificate] = field(default_factory=list)

    @property
    def root(self) -> x509.Certificate:
        return self.certificates["root"]

    @property
    def issuing(self) -> x509.Certificate:
        return self.certificates["issuing"]

    @classmethod
    def load(cls, directory: Path) -> Authority:
        config_path = directory / CONFIG_FILE
        try:
            config = CaConfig.from_toml(config_path.read_text(), str(config_path))
        except FileNotFoundError:
            raise ConfigError(f"{directory}: not a CA directory (run 'qsign ca init')") from None
        certificates = {role: read_certificate(directory / "certs" / f"{role}.pem")
                        for role in ROLES}
        keys = {role: _open_key(directory, config, role) for role in ROLES}
        if any(_outdated(certificates[role], config) for role in SERVICES):
            certificates.update(_reissue_services(directory, config, keys))
        return cls(directory, config, certificates, keys,
                   read_certificates(directory / "trust" / "manufacturers"),
                   read_certificates(directory / "trust" / "identity"),
                   read_certificates(directory / "certs" / SUPERSEDED))

    @classmethod
    def init(cls, directory: Path, config: CaConfig | None = None, *,
             pin: str | None = None) -> Authority:
        """Keys, a root, an issuing CA, the OCSP responder and the TSA certificates."""
        config = config or CaConfig()
        if (directory / CONFIG_FILE).exists():
            raise FileExistsError(f"{directory}: a CA already lives here")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("certs", "keys", "trust/manufacturers", "trust/identity"):
            (directory / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        if config.key_store == "pkcs11":
            if not (config.pkcs11_module and config.token_label and pin):
                raise ConfigError("a PKCS#11 key store needs a module, a token label and a PIN")
            write_atomically(directory / PIN_FILE, pin.encode())
            for role in ROLES:
                generate_pkcs11_key(config.pkcs11_module, config.token_label, pin,
                                    _key_label(role))
        else:
            for role in ROLES:
                FileKey.generate(directory / "keys" / f"{role}.key")
        keys = {role: _open_key(directory, config, role) for role in ROLES}
        org = {"country_name": config.country, "organization_name": config.organization}
        root = ca_certificate(
            subject=x509.Name.build({**org, "common_name": f"{config.name} Root"}),
            public_key=keys["root"].public_key_info, issuer=None, issuer_key=keys["root"],
            validity=Validity.starting_now(25 * 365), path_length=1)
        issuing = ca_certificate(
            subject=x509.Name.build({**org, "common_name": f"{config.name} Issuing"}),
            public_key=keys["issuing"].public_key_info, issuer=root,
            issuer_key=keys["root"], path_length=0,
            validity=Validity.starting_now(15 * 365, cap=root["tbs_certificate"]["validity"]
                                           ["not_after"].native))
        services = {role: _service_certificate(
            role, x509.Name.build({**org, "common_name": f"{config.name} {name}"}),
            config, keys, issuing) for role, (_, name, _) in SERVICES.items()}
        for role, cert in {"root": root, "issuing": issuing, **services}.items():
            write_certificate(directory / "certs" / f"{role}.pem", cert)
        write_atomically(directory / CONFIG_FILE, config.to_toml().encode(), mode=0o644)
        return cls.load(directory)

    def trust_manufacturer(self, pem_bytes: bytes) -> Path:
        return self._trust("manufacturers", pem_bytes)

    def trust_identity_service(self, pem_bytes: bytes) -> Path:
        return self._trust("identity", pem_bytes)

    def _trust(self, kind: str, pem_bytes: bytes) -> Path:
        cert = load_certificate(pem_bytes)
        name = f"{cert.sha256.hex()[:16]}.pem"
        path: Path = self.directory / "trust" / kind / name
        write_certificate(path, cert)
        target = (self.manufacturer_roots if kind == "manufacturers"
                  else self.identity_certificates)
        target.append(cert)
        return path

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def _service_certificate(role: str, subject: x509.Name, config: CaConfig,
                         keys: dict[str, CaKey], issuing: x509.Certificate) -> x509.Certificate:
    """The OCSP responder's or the TSA's certificate for `keys[role]`, with AIA caIssuers
    naming where this CA publishes its issuing certificate (RFC 5280 §4.2.2.1)."""
    purpose, _, days = SERVICES[role]
    cap = issuing["tbs_certificate"]["validity"]["not_after"].native
    return service_certificate(
        subject=subject, public_key=keys[role].public_key_info, issuer=issuing,
        issuer_key=keys["issuing"], validity=Validity.starting_now(days, cap=cap),
        purpose=purpose, ca_issuers_url=config.points.ca_issuers_url)


def _outdated(cert: x509.Certificate, config: CaConfig) -> bool:
    """A service certificate whose AIA does not name this CA's caIssuers URL (made
    before service certificates had AIA, or before base_url changed)."""
    return ca_issuers_urls(cert) != [config.points.ca_issuers_url]


def _reissue_services(directory: Path, config: CaConfig, keys: dict[str, CaKey]
                      ) -> dict[str, x509.Certificate]:
    """Re-issue the outdated OCSP and TSA certificates at start: same subject, same key,
    AIA caIssuers added, a fresh validity. The old ones move to certs/superseded/ (still
    valid, still 'good' at OCSP). One process at a time; the files are re-read under the
    lock, so a second process finds the work done."""
    certs = directory / "certs"
    issued: dict[str, x509.Certificate] = {}
    with _locked(certs):
        issuing = read_certificate(certs / "issuing.pem")
        for role in SERVICES:
            current = read_certificate(certs / f"{role}.pem")
            if not _outdated(current, config):
                issued[role] = current
                continue
            renewed = _service_certificate(role, current.subject, config, keys, issuing)
            (certs / SUPERSEDED).mkdir(mode=0o700, exist_ok=True)
            write_certificate(certs / SUPERSEDED / f"{role}-{current.serial_number:x}.pem",
                              current)
            write_certificate(certs / f"{role}.pem", renewed)
            log.warning("%s certificate re-issued with AIA caIssuers %s (serial %x, was %x)",
                        role, config.points.ca_issuers_url, renewed.serial_number,
                        current.serial_number)
            issued[role] = renewed
    return issued


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _key_label(role: str) -> str:
    return f"qsign-ca-{role}"


def _open_key(directory: Path, config: CaConfig, role: str) -> CaKey:
    if config.key_store == "pkcs11":
        try:
            pin = (directory / PIN_FILE).read_text().strip()
        except OSError as exc:
            raise CaKeyError(f"{directory / PIN_FILE}: {exc}") from exc
        return Pkcs11Key(config.pkcs11_module, config.token_label, pin, _key_label(role))
    return FileKey.load(directory / "keys" / f"{role}.key")




def load_certificate(data: bytes) -> x509.Certificate:
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    cert = x509.Certificate.load(data)
    _ = cert.native  # parse fully now: a malformed certificate fails here, not later
    return cert


def read_certificate(path: Path) -> x509.Certificate:
    try:
        return load_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def read_certificates(directory: Path) -> list[x509.Certificate]:
    if not directory.is_dir():
        return []
    return [read_certificate(p) for p in sorted(directory.glob("*.pem"))]


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    write_atomically(path, pem.armor("CERTIFICATE", cert.dump()), mode=0o644)
