"""The agent's configuration: TOML into frozen dataclasses; an unknown key is an error
that names its path (pyHanko's config habit)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORT = 35741


class ConfigError(ValueError):
    """The configuration file is malformed; the message names the key."""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qsign-agent"


def check_origin(origin: str, where: str) -> str:
    """An origin as browsers send it: scheme://host[:port], nothing else (RFC 6454)."""
    parts = urlsplit(origin)
    if (parts.scheme not in ("https", "http") or not parts.hostname or parts.path
            or parts.query or parts.fragment or parts.username or parts.password
            or origin != origin.strip() or origin.endswith("/")):
        raise ConfigError(f"{where}: {origin!r} is not an origin (scheme://host[:port])")
    return origin


@dataclass(frozen=True)
class AgentConfig:
    port: int = DEFAULT_PORT
    state_dir: Path = field(default_factory=default_state_dir)
    allowed_origins: tuple[str, ...] = ()
    max_connections: int = 32
    max_message_bytes: int = 256 * 1024
    requests_per_minute: int = 600  # per origin
    pcsc: bool = True
    pkcs11_modules: tuple[str, ...] | None = None  # None: OpenSC's and SoftHSM2's if present
    timestamp_url: str | None = None  # RFC 3161 service for PAdES B-T (e.g. the CA's /tsa)
    # The signature service whose /api/v1/sms-otp/{send,verify} the SMS OTP provider calls
    # (portal/API.md). From the config only: a page must not choose who checks its OTP.
    portal_url: str | None = None
    # Which second factors authorise a signature: "totp", "sms" (needs portal_url), "any".
    otp_mode: str = "any"

    @classmethod
    def load(cls, path: Path | None) -> AgentConfig:
        if path is None:
            return cls()
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        return cls.from_mapping(raw, str(path))

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], source: str = "config") -> AgentConfig:
        unknown = set(raw) - {"agent"}
        if unknown:
            raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r}")
        section = raw.get("agent", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: [agent] must be a table")
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in section.items():
            where = f"{source}: agent.{key}"
            if key not in names:
                raise ConfigError(f"{where}: unknown key")
            values[key] = _convert(key, value, where)
        config = cls(**values)
        if not 1 <= config.port <= 65535:
            raise ConfigError(f"{source}: agent.port out of range")
        for name in ("max_connections", "max_message_bytes", "requests_per_minute"):
            if getattr(config, name) < 1:
                raise ConfigError(f"{source}: agent.{name} must be positive")
        return config


def _convert(key: str, value: Any, where: str) -> Any:
    if key in ("port", "max_connections", "max_message_bytes", "requests_per_minute"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: an integer")
        return value
    if key == "otp_mode":
        if value not in ("totp", "sms", "any"):
            raise ConfigError(f"{where}: one of 'totp', 'sms', 'any'")
        return value
    if key == "pcsc":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: true or false")
        return value
    if key in ("timestamp_url", "portal_url"):
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: an http(s) URL")
        return value
    if key == "state_dir":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: a path")
        return Path(value).expanduser()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: a list of strings")
    if key == "allowed_origins":
        return tuple(check_origin(v, f"{where}[{i}]") for i, v in enumerate(value))
    return tuple(value)
