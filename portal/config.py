"""The portal's configuration: TOML `[portal]` into a frozen dataclass; an unknown key
is an error naming its path (the agent's and pyHanko's habit)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from portal.identity.model import IdentityPolicy
from portal.validation_config import ValidationConfig

DEFAULT_PORT = 8780
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class ConfigError(ValueError):
    """The configuration is malformed; the message names the key."""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qsign-portal"


@dataclass(frozen=True)
class PortalConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # What links in e-mails start with (the address signers reach the portal at).
    public_url: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    database_url: str | None = None  # None: STATE_DIR/portal.sqlite
    agent_port: int = 35741  # where signers' pages find the agent on loopback
    # Trust anchors (PEM or DER files) for the qualified-certificate check and B-LT.
    trust_roots: tuple[Path, ...] = ()
    # Issuing CA certificates (e.g. from the trusted list) that complete a signer's chain:
    # a token usually holds only its own certificate.
    intermediates: tuple[Path, ...] = ()
    # URL prefixes from which a certificate's AIA caIssuers may be fetched when a chain is
    # still incomplete; empty: never (the page supplies certificates: no blind requests
    # to addresses it chose).
    ca_issuers_prefixes: tuple[str, ...] = ()
    # The agents allowed at /api/v1/sms-otp/{send,verify}: the SHA-256 (hex) of each
    # bearer token they present (portal/agent_auth.py); empty: those routes refuse all.
    agent_token_sha256: tuple[str, ...] = ()
    # Webhook URLs (portal/webhooks.py) may reach a private or loopback address only
    # under one of these prefixes (SSRF); the first retry after `webhook_retry_seconds`,
    # each next one twice as late.
    webhook_url_prefixes: tuple[str, ...] = ()
    webhook_retry_seconds: int = 30
    timestamp_url: str | None = None  # RFC 3161 (the CA's /tsa): needed for B-T and B-LT
    check_revocation: bool = True  # OCSP from the certificate's AIA before signing
    smtp_host: str | None = None  # None: e-mails stay in the outbox only
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password_file: Path | None = None
    mail_from: str = "qsign portal <no-reply@localhost>"
    # Requesters' OpenID Connect sign-in (portal/accounts/oidc.py): the provider's issuer
    # URL and this portal's client there (secret inline or in a file); no issuer: off.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_client_secret_file: Path | None = None
    oidc_name: str = "OpenID Connect"  # the button says "Sign in with <oidc_name>"
    # The reference identity service accepts SPECIMEN documents: demos and tests only.
    identity_accept_specimens: bool = False
    # The reference identity service's policy: the TOML table [identity] (accepted
    # document kinds per issuing state, liveness challenges and time frames, ...).
    identity_policy: IdentityPolicy | None = None
    # The validation service: the TOML table [validation] (portal/validation_config.py).
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    default_lang: str = "en"
    # E-mail the requester when a signer corrects their name or phone (also in the thread).
    notify_requester_on_correction: bool = True
    max_document_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    # Slow clients (qsign/http_guard.py, `qsign portal serve`): seconds for a request's
    # headers (extended by the bytes sent, at most doubled), for its body (likewise),
    # idle between requests; open connections per client address.
    header_timeout: int = 20
    body_timeout: int = 20
    idle_timeout: int = 30
    max_connections_per_address: int = 64

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def load(cls, path: Path | None) -> PortalConfig:
        if path is None:
            return cls()
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        return cls.from_mapping(raw, str(path))

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], source: str = "config") -> PortalConfig:
        unknown = set(raw) - {"portal", "identity", "validation"}
        if unknown:
            raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r}")
        policy = None
        if "identity" in raw:
            table = raw["identity"]
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [identity] must be a table")
            for key, value in table.items():
                default = getattr(IdentityPolicy(), key, None)
                if isinstance(default, bool | int | float) and not (
                        type(value) is type(default)
                        or (type(default) is float and type(value) is int)):
                    raise ConfigError(f"{source}: [identity] {key}: a "
                                      f"{type(default).__name__}")
            try:
                policy = IdentityPolicy.from_mapping(table)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{source}: [identity]: {exc}") from exc
        section = raw.get("portal", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: [portal] must be a table")
        kinds = {f.name: f.type for f in fields(cls)
                 if f.name not in ("identity_policy", "validation")}
        values: dict[str, Any] = {}
        for key, value in section.items():
            where = f"{source}: portal.{key}"
            if key not in kinds:
                raise ConfigError(f"{where}: unknown key")
            values[key] = _convert(str(kinds[key]), value, where)
        try:
            validation = ValidationConfig.from_table(raw.get("validation", {}), source)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        config = cls(**values, identity_policy=policy, validation=validation)
        for name in ("port", "smtp_port", "agent_port"):
            if not 1 <= getattr(config, name) <= 65535:
                raise ConfigError(f"{source}: portal.{name} out of range")
        if config.default_lang not in ("en", "fr"):
            raise ConfigError(f"{source}: portal.default_lang: 'en' or 'fr'")
        if config.oidc_issuer is not None:
            _check_oidc(config, source)
        return config


def _check_oidc(config: PortalConfig, source: str) -> None:
    """The provider's keys come from its discovery document: only over https (plain http
    on loopback, for tests and a provider on the same machine)."""
    issuer = urlsplit(config.oidc_issuer or "")
    if not (issuer.scheme == "https" or (
            issuer.scheme == "http" and issuer.hostname in ("127.0.0.1", "::1", "localhost"))):
        raise ConfigError(f"{source}: portal.oidc_issuer: an https URL")
    if not config.oidc_client_id:
        raise ConfigError(f"{source}: portal.oidc_client_id: needed with oidc_issuer")
    if not (config.oidc_client_secret or config.oidc_client_secret_file):
        raise ConfigError(f"{source}: portal.oidc_client_secret(_file): needed with "
                          "oidc_issuer")


def _convert(kind: str, value: Any, where: str) -> Any:
    """Values by the field's declared type (annotations are strings here)."""
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: a positive integer")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: true or false")
        return value
    if where.endswith(".agent_token_sha256"):
        if not isinstance(value, list) or not all(
                isinstance(v, str) and _SHA256_HEX.fullmatch(v) for v in value):
            raise ConfigError(f"{where}: a list of SHA-256 digests (64 hex digits)")
        return tuple(v.lower() for v in value)
    if kind == "tuple[str, ...]":
        if not isinstance(value, list) or not all(
                isinstance(v, str) and v.startswith(("http://", "https://")) for v in value):
            raise ConfigError(f"{where}: a list of http(s) URL prefixes")
        return tuple(value)
    if kind == "tuple[Path, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: a list of paths")
        return tuple(Path(v).expanduser() for v in value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: a non-empty string")
    if kind in ("Path", "Path | None"):
        return Path(value).expanduser()
    if where.endswith(("_url", ".public_url")) and kind == "str | None" and not (
            value.startswith(("http://", "https://", "postgresql://", "postgres://",
                              "sqlite:///"))):
        raise ConfigError(f"{where}: a URL")
    return value
