"""The agent's configuration: TOML into frozen dataclasses; an unknown key is an error
that names its path (pyHanko's config habit).

Three layers make the effective configuration (`load_effective`), lowest first:
built-in defaults, the enterprise policy's values (`/etc/qsign/agent.toml`, [agent]),
the user's file, and last the policy's locked keys ([policy] locked = [...]), which
no user file can change. Every value remembers where it came from (`Provenance`).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORT = 35741
DEFAULT_POLICY_PATH = Path("/etc/qsign/agent.toml")
POLICY_ENV = "QSIGN_AGENT_POLICY"  # another policy path (tests, non-standard prefixes)
LOG_LEVELS = ("traffic", "debug", "info", "warning", "error")
# Keys only the enterprise policy may set: a user file naming them is an error.
POLICY_ONLY = frozenset({"discovery", "discovery_interfaces"})


class ConfigError(ValueError):
    """The configuration file is malformed; the message names the key."""


def default_state_dir() -> Path:
    # systemd's StateDirectory= hands the service its directory here (systemd.exec(5)).
    managed = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if managed:
        return Path(managed)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qsign-agent"


def default_user_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "qsign" / "agent.toml"


def policy_path() -> Path:
    return Path(os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH)


MAX_ORIGIN_LENGTH = 255  # a DNS name's limit (RFC 1035 §2.3.4) bounds a sane origin


def is_web_origin(origin: str) -> bool:
    """An http(s) origin as browsers serialise it: scheme://host[:port], nothing else
    (RFC 6454 §6.2), at most MAX_ORIGIN_LENGTH characters. `null`, file://, extension
    schemes and junk are not."""
    if (not 0 < len(origin) <= MAX_ORIGIN_LENGTH or not origin.isascii()
            or not origin.isprintable() or any(c.isspace() for c in origin)
            or origin.endswith("/")):
        return False
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return (parts.scheme in ("https", "http") and bool(parts.hostname)
            and not (parts.path or parts.query or parts.fragment or parts.username
                     or parts.password or "?" in origin or "#" in origin))


def check_origin(origin: str, where: str) -> str:
    """An origin as browsers send it: scheme://host[:port], nothing else (RFC 6454)."""
    if not is_web_origin(origin):
        raise ConfigError(f"{where}: {origin!r} is not an origin (scheme://host[:port])")
    return origin


@dataclass(frozen=True)
class AgentConfig:
    port: int = DEFAULT_PORT
    state_dir: Path = field(default_factory=default_state_dir)
    allowed_origins: tuple[str, ...] = ()
    max_connections: int = 32  # open WebSockets, all origins together
    # ... and from any one origin, so that one page cannot take every slot (SECURITY #40).
    max_connections_per_origin: int = 8
    # Open TCP connections on every route; idle or slow ones give way to new ones.
    max_tcp_connections: int = 256
    # Seconds to receive a request's head, its body, and between keep-alive requests.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    idle_timeout_seconds: float = 30.0
    # Pairing requests waiting for a person, from all origins together (SECURITY #41).
    max_pending_pairings: int = 20
    max_message_bytes: int = 256 * 1024
    requests_per_minute: int = 600  # per origin
    pcsc: bool = True
    pkcs11_modules: tuple[str, ...] | None = None  # None: OpenSC's and SoftHSM2's if present
    timestamp_url: str | None = None  # RFC 3161 service for PAdES B-T (e.g. the CA's /tsa)
    # The signature service whose /api/v1/sms-otp/{send,verify} the SMS OTP provider calls
    # (portal/API.md). From the config only: a page must not choose who checks its OTP.
    portal_url: str | None = None
    # The agent's credential at that service (a 0600 file holding one bearer token).
    portal_token_file: Path | None = None
    # Which second factors authorise a signature: "totp", "sms" (needs portal_url), "any".
    otp_mode: str = "any"
    # The certification authority (enrolment, OCSP, CRL): ca/ service base URL.
    ca_url: str | None = None
    # One of LOG_LEVELS; None: the command line (-v, QSIGN_LOG_LEVEL) decides.
    log_level: str | None = None
    # Prometheus text exposition at /metrics (loopback, Host-checked like every route).
    metrics: bool = False
    # mDNS/DNS-SD advertising of _qsign._tcp (RFC 6762/6763); enterprise policy only.
    discovery: bool = False
    # IPv4 addresses or interface names to advertise on; empty: every non-loopback one.
    discovery_interfaces: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path | None) -> AgentConfig:
        """One file alone, no policy (see `load_effective` for the layered result)."""
        if path is None:
            return cls()
        return cls.from_mapping(_read_toml(path), str(path))

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], source: str = "config") -> AgentConfig:
        unknown = set(raw) - {"agent"}
        if unknown:
            raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r}")
        return cls.from_values(_section_values(raw, source), source)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], source: str = "config") -> AgentConfig:
        """Checked values (as `_convert` makes them) into a config, with the cross-checks."""
        config = cls(**values)
        if not 1 <= config.port <= 65535:
            raise ConfigError(f"{source}: agent.port out of range")
        for name in _COUNTS:
            if getattr(config, name) < 1:
                raise ConfigError(f"{source}: agent.{name} must be positive")
        for name in _SECONDS:
            if not 0 < getattr(config, name) <= 3600:
                raise ConfigError(f"{source}: agent.{name}: more than 0, at most 3600")
        if config.max_tcp_connections <= config.max_connections:
            raise ConfigError(f"{source}: agent.max_tcp_connections must exceed "
                              "agent.max_connections (WebSockets are TCP connections too)")
        if config.otp_mode == "sms" and not config.portal_url:
            raise ConfigError(f"{source}: agent.otp_mode = \"sms\" needs agent.portal_url")
        return config


KEYS: tuple[str, ...] = tuple(f.name for f in fields(AgentConfig))
_COUNTS = ("port", "max_connections", "max_connections_per_origin", "max_tcp_connections",
           "max_pending_pairings", "max_message_bytes", "requests_per_minute")
_SECONDS = ("header_timeout_seconds", "body_timeout_seconds", "idle_timeout_seconds")


class Source(enum.Enum):
    DEFAULT = "default"
    POLICY = "policy"  # the policy's value, which the user's file may change
    USER = "user"
    LOCKED = "policy (locked)"


@dataclass(frozen=True)
class Provenance:
    source: Source
    path: Path | None = None
    overridden: Path | None = None  # a user file whose value for a locked key was ignored

    def describe(self) -> str:
        text = self.source.value if self.path is None else f"{self.source.value} {self.path}"
        if self.overridden is not None:
            text += f"; the value in {self.overridden} is ignored"
        return text


@dataclass(frozen=True)
class Policy:
    """The enterprise policy: values ([agent]) and which keys are locked ([policy])."""

    path: Path
    values: Mapping[str, Any]
    locked: frozenset[str]

    @classmethod
    def load(cls, path: Path) -> Policy | None:
        """The policy at `path`, or None if there is no file. A broken policy is an
        error, never ignored: an agent must not start without its administrator's rules."""
        if not path.exists():
            return None
        raw = _read_toml(path)
        unknown = set(raw) - {"agent", "policy"}
        if unknown:
            raise ConfigError(f"{path}: unknown section {sorted(unknown)[0]!r}")
        values = _section_values(raw, str(path), allow_policy_only=True)
        section = raw.get("policy", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [policy] must be a table")
        for key in section:
            if key != "locked":
                raise ConfigError(f"{path}: policy.{key}: unknown key")
        locked = section.get("locked", [])
        if not isinstance(locked, list) or not all(isinstance(k, str) for k in locked):
            raise ConfigError(f"{path}: policy.locked: a list of key names")
        for i, key in enumerate(locked):
            if key not in KEYS:
                raise ConfigError(f"{path}: policy.locked[{i}]: {key!r} is not an agent key")
        AgentConfig.from_values(values, str(path))  # cross-checks on the policy alone
        return cls(path, values, frozenset(locked))


@dataclass(frozen=True)
class EffectiveConfig:
    config: AgentConfig
    provenance: Mapping[str, Provenance]
    policy: Policy | None
    user_path: Path | None

    def rows(self) -> list[tuple[str, Any, Provenance]]:
        return [(key, getattr(self.config, key), self.provenance[key]) for key in KEYS]

    def to_json(self) -> dict[str, Any]:
        return {key: {"value": _jsonable(value), "source": prov.source.value,
                      "path": str(prov.path) if prov.path else None,
                      **({"ignored": str(prov.overridden)} if prov.overridden else {})}
                for key, value, prov in self.rows()}


def load_effective(user_path: Path | None = None, policy_file: Path | None = None
                   ) -> EffectiveConfig:
    """Defaults < policy values < the user's file < the policy's locked keys.

    `user_path` None: the user's default file (`$XDG_CONFIG_HOME/qsign/agent.toml`) if it
    exists. `policy_file` None: `$QSIGN_AGENT_POLICY` or `/etc/qsign/agent.toml`.
    """
    policy = Policy.load(policy_file if policy_file is not None else policy_path())
    if user_path is None and default_user_config().is_file():
        user_path = default_user_config()
    user: dict[str, Any] = {}
    if user_path is not None:
        raw = _read_toml(user_path)
        unknown = set(raw) - {"agent"}
        if unknown:
            raise ConfigError(f"{user_path}: unknown section {sorted(unknown)[0]!r}")
        user = _section_values(raw, str(user_path))
    values: dict[str, Any] = {}
    provenance = {key: Provenance(Source.DEFAULT) for key in KEYS}
    if policy is not None:
        for key, value in policy.values.items():
            values[key] = value
            provenance[key] = Provenance(Source.POLICY, policy.path)
    for key, value in user.items():
        if policy is not None and key in policy.locked:
            continue
        values[key] = value
        provenance[key] = Provenance(Source.USER, user_path)
    if policy is not None:
        for key in policy.locked:
            ignored = user_path if key in user else None
            if key in policy.values:
                values[key] = policy.values[key]
            else:  # locked to the built-in default
                values.pop(key, None)
            provenance[key] = Provenance(Source.LOCKED, policy.path, ignored)
    where = str(user_path) if user_path else str(policy.path if policy else "defaults")
    return EffectiveConfig(AgentConfig.from_values(values, where), provenance, policy,
                           user_path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _section_values(raw: dict[str, Any], source: str, *, allow_policy_only: bool = False
                    ) -> dict[str, Any]:
    section = raw.get("agent", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: [agent] must be a table")
    values: dict[str, Any] = {}
    for key, value in section.items():
        where = f"{source}: agent.{key}"
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown key")
        if key in POLICY_ONLY and not allow_policy_only:
            raise ConfigError(f"{where}: set only by the enterprise policy "
                              f"({DEFAULT_POLICY_PATH})")
        values[key] = _convert(key, value, where)
    return values


_INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")  # IFNAMSIZ - 1


def _convert(key: str, value: Any, where: str) -> Any:
    if key in _COUNTS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: an integer")
        return value
    if key in _SECONDS:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: a number of seconds")
        return float(value)
    if key == "otp_mode":
        if value not in ("totp", "sms", "any"):
            raise ConfigError(f"{where}: one of 'totp', 'sms', 'any'")
        return value
    if key == "log_level":
        if value not in LOG_LEVELS:
            raise ConfigError(f"{where}: one of {', '.join(map(repr, LOG_LEVELS))}")
        return value
    if key in ("pcsc", "metrics", "discovery"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: true or false")
        return value
    if key in ("timestamp_url", "portal_url", "ca_url"):
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: an http(s) URL")
        return value
    if key in ("state_dir", "portal_token_file"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: a path")
        return Path(value).expanduser()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: a list of strings")
    if key == "allowed_origins":
        return tuple(check_origin(v, f"{where}[{i}]") for i, v in enumerate(value))
    if key == "discovery_interfaces":
        return tuple(_interface(v, f"{where}[{i}]") for i, v in enumerate(value))
    return tuple(value)


def _interface(value: str, where: str) -> str:
    """An IPv4 address or an interface name (mDNS here is IPv4: RFC 6762 224.0.0.251)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        if not _INTERFACE_NAME.fullmatch(value):
            raise ConfigError(f"{where}: {value!r} is neither an IPv4 address nor an "
                              "interface name") from None
        return value
    if address.version != 4:
        raise ConfigError(f"{where}: {value!r}: IPv4 addresses only")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
