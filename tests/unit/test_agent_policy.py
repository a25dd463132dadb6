"""Enterprise policy layering: defaults < policy values < the user's file < locked keys,
with the provenance of each value, and `qsign agent config --effective`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import (
    DEFAULT_PORT,
    KEYS,
    AgentConfig,
    ConfigError,
    Policy,
    Source,
    load_effective,
)
from qsign.cli import main

PORTAL = "https://portal.example.test"
OTHER = "https://other.example.test"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real /etc/qsign or ~/.config file may leak into these tests."""
    monkeypatch.setenv("QSIGN_AGENT_POLICY", str(tmp_path / "no-policy.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_no_files_means_built_in_defaults(tmp_path: Path) -> None:
    effective = load_effective()
    assert effective.config == AgentConfig()
    assert effective.config.state_dir == tmp_path / "xdg-state" / "qsign-agent"
    assert {p.source for p in effective.provenance.values()} == {Source.DEFAULT}
    assert effective.policy is None and effective.user_path is None


def test_locked_keys_beat_the_user_and_unlocked_policy_values_are_defaults(
        tmp_path: Path) -> None:
    policy = write(tmp_path / "policy.toml", f"""
[policy]
locked = ["allowed_origins", "otp_mode", "portal_url"]
[agent]
allowed_origins = ["{PORTAL}"]
otp_mode = "sms"
portal_url = "https://sign.example.test"
timestamp_url = "https://ca.example.test/tsa"
max_connections = 8
""")
    user = write(tmp_path / "user.toml", f"""
[agent]
allowed_origins = ["{OTHER}"]
otp_mode = "totp"
max_connections = 4
port = 40000
""")
    effective = load_effective(user, policy)
    c = effective.config
    # locked: the policy's value, whatever the user wrote
    assert c.allowed_origins == (PORTAL,)
    assert c.otp_mode == "sms"
    assert c.portal_url == "https://sign.example.test"
    # unlocked policy value, user silent: the policy's value
    assert c.timestamp_url == "https://ca.example.test/tsa"
    # unlocked policy value, user set it: the user's value
    assert c.max_connections == 4
    # only the user: the user's; neither: the default
    assert c.port == 40000 and c.requests_per_minute == 600
    p = effective.provenance
    assert p["allowed_origins"].source is Source.LOCKED
    assert p["allowed_origins"].overridden == user  # the user's value was ignored, and said so
    assert p["portal_url"].source is Source.LOCKED and p["portal_url"].overridden is None
    assert p["timestamp_url"].source is Source.POLICY and p["timestamp_url"].path == policy
    assert p["max_connections"].source is Source.USER and p["max_connections"].path == user
    assert p["port"].source is Source.USER
    assert p["requests_per_minute"].source is Source.DEFAULT


def test_a_key_locked_without_a_value_is_locked_to_the_default(tmp_path: Path) -> None:
    policy = write(tmp_path / "policy.toml", '[policy]\nlocked = ["metrics", "port"]\n')
    user = write(tmp_path / "user.toml", "[agent]\nmetrics = true\nport = 4000\n")
    effective = load_effective(user, policy)
    assert effective.config.metrics is False and effective.config.port == DEFAULT_PORT
    assert effective.provenance["port"].source is Source.LOCKED


def test_discovery_is_the_policys_alone(tmp_path: Path) -> None:
    user = write(tmp_path / "user.toml", "[agent]\ndiscovery = true\n")
    with pytest.raises(ConfigError, match=r"agent\.discovery: set only by the enterprise"):
        load_effective(user, tmp_path / "none.toml")
    policy = write(tmp_path / "policy.toml",
                   '[agent]\ndiscovery = true\ndiscovery_interfaces = ["10.1.2.3", "eth0"]\n')
    effective = load_effective(None, policy)
    assert effective.config.discovery is True
    assert effective.config.discovery_interfaces == ("10.1.2.3", "eth0")
    assert effective.provenance["discovery"].source is Source.POLICY


def test_the_users_default_file_is_found_in_xdg_config_home(tmp_path: Path) -> None:
    user = write(tmp_path / "xdg-config" / "qsign" / "agent.toml", "[agent]\nport = 41000\n")
    effective = load_effective()
    assert effective.user_path == user and effective.config.port == 41000


def test_the_policy_path_comes_from_the_environment(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    policy = write(tmp_path / "elsewhere.toml", '[agent]\notp_mode = "totp"\n')
    monkeypatch.setenv("QSIGN_AGENT_POLICY", str(policy))
    effective = load_effective()
    assert effective.policy is not None and effective.policy.path == policy
    assert effective.config.otp_mode == "totp"


@pytest.mark.parametrize(("text", "message"), [
    ("[agent]\nsurprise = 1\n", r"policy\.toml: agent\.surprise: unknown key"),
    ("[policy]\nlocked = [\"nope\"]\n", r"policy\.locked\[0\]: 'nope' is not an agent key"),
    ("[policy]\nlocked = \"port\"\n", r"policy\.locked: a list of key names"),
    ("[policy]\nextra = 1\n", r"policy\.extra: unknown key"),
    ("[other]\n", r"unknown section 'other'"),
    ("[agent]\nport = 0\n", r"agent\.port out of range"),
    ("[agent]\nlog_level = \"loud\"\n", r"agent\.log_level: one of"),
    ("[agent]\nca_url = \"ftp://ca\"\n", r"agent\.ca_url: an http\(s\) URL"),
    ("[agent]\ndiscovery_interfaces = [\"::1\"]\n", r"discovery_interfaces\[0\]: '::1': IPv4"),
    ("[agent]\ndiscovery_interfaces = [\"a b\"]\n", r"neither an IPv4 address nor"),
    ("[agent]\nallowed_origins = [\"https://x.test/\"]\n", r"allowed_origins\[0\]"),
    ("not toml [", r"policy\.toml: "),
])
def test_a_broken_policy_is_an_error_never_ignored(tmp_path: Path, text: str,
                                                    message: str) -> None:
    policy = write(tmp_path / "policy.toml", text)
    with pytest.raises(ConfigError, match=message):
        load_effective(None, policy)


def test_a_policy_that_is_not_there_is_no_policy(tmp_path: Path) -> None:
    assert Policy.load(tmp_path / "absent.toml") is None


def test_the_old_single_file_api_still_works(tmp_path: Path) -> None:
    user = write(tmp_path / "user.toml", f'[agent]\nallowed_origins = ["{PORTAL}"]\n')
    assert AgentConfig.load(user).allowed_origins == (PORTAL,)
    assert AgentConfig.load(None) == AgentConfig()
    with pytest.raises(ConfigError, match="unknown key"):
        AgentConfig.from_mapping({"agent": {"nope": 1}})


def test_systemd_state_directory_is_the_default_state_dir(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/qsign-agent:/var/lib/other")
    assert AgentConfig().state_dir == Path("/var/lib/qsign-agent")


def test_effective_output_names_every_key_and_its_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    policy = write(tmp_path / "policy.toml", f"""
[policy]
locked = ["allowed_origins"]
[agent]
allowed_origins = ["{PORTAL}"]
timestamp_url = "https://ca.example.test/tsa"
""")
    monkeypatch.setenv("QSIGN_AGENT_POLICY", str(policy))
    user = write(tmp_path / "user.toml", f'[agent]\nallowed_origins = ["{OTHER}"]\nport = 4242\n')
    assert main(["agent", "config", "--effective", "--config", str(user)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"policy: {policy}" and lines[1] == f"user:   {user}"
    by_key = {line.split()[0]: line for line in lines[2:]}
    assert set(by_key) == set(KEYS)
    assert by_key["allowed_origins"].split(None, 2)[1:] == [
        f"[{PORTAL}]", f"policy (locked) {policy}; the value in {user} is ignored"]
    assert by_key["port"].split()[1:] == ["4242", "user", str(user)]
    assert by_key["timestamp_url"].split()[1:] == ["https://ca.example.test/tsa", "policy",
                                                   str(policy)]
    assert by_key["otp_mode"].split()[1:] == ["any", "default"]

    assert main(["agent", "config", "--json", "--config", str(user)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy"] == str(policy) and data["user"] == str(user)
    assert data["values"]["allowed_origins"] == {"value": [PORTAL], "source": "policy (locked)",
                                                 "path": str(policy), "ignored": str(user)}
    assert data["values"]["port"] == {"value": 4242, "source": "user", "path": str(user)}
    assert data["values"]["pkcs11_modules"] == {"value": None, "source": "default",
                                                "path": None}


def test_chromium_policy_lists_the_effective_origins(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    policy = write(tmp_path / "policy.toml",
                   f'[policy]\nlocked = ["allowed_origins"]\n'
                   f'[agent]\nallowed_origins = ["{PORTAL}", "{OTHER}"]\n')
    monkeypatch.setenv("QSIGN_AGENT_POLICY", str(policy))
    assert main(["agent", "config", "--chromium-policy"]) == 0
    snippet = json.loads(capsys.readouterr().out)
    assert snippet == {"LoopbackNetworkAllowedForUrls": [PORTAL, OTHER],
                       "LocalNetworkAccessAllowedForUrls": [PORTAL, OTHER]}
    monkeypatch.setenv("QSIGN_AGENT_POLICY", str(tmp_path / "none.toml"))
    assert main(["agent", "config", "--chromium-policy"]) == 2
    assert "allowed_origins is empty" in capsys.readouterr().err


def test_the_shipped_default_policy_is_valid_and_changes_nothing() -> None:
    shipped = Path(__file__).resolve().parents[2] / "packaging" / "agent.toml"
    policy = Policy.load(shipped)
    assert policy is not None and policy.locked == frozenset()
    effective = load_effective(None, shipped)
    assert effective.config == AgentConfig()


@pytest.mark.parametrize(("locked", "verbose", "expected"), [
    (False, [], logging.INFO),  # the file's level when the command line says nothing
    # the command line wins over an unlocked level: agent run leaves the level alone
    # (under pytest basicConfig is a no-op, so it stays at the WARNING set below)
    (False, ["-vv"], logging.WARNING),
    (True, ["-vv"], logging.INFO),  # a locked level wins over the command line
])
def test_agent_run_applies_the_effective_log_level(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locked: bool, verbose: list[str],
        expected: int) -> None:
    import agent.app

    policy = write(tmp_path / "policy.toml",
                   ('[policy]\nlocked = ["log_level"]\n' if locked else "")
                   + '[agent]\nlog_level = "info"\n')
    monkeypatch.setenv("QSIGN_AGENT_POLICY", str(policy))
    monkeypatch.delenv("QSIGN_LOG_LEVEL", raising=False)
    served: list[AgentConfig] = []

    async def fake_serve(config: AgentConfig,
                         reload: Callable[[], AgentConfig] | None = None) -> None:
        served.append(config)

    monkeypatch.setattr(agent.app, "serve", fake_serve)
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.WARNING)
    try:
        assert main([*verbose, "agent", "run"]) == 0
        assert root.level == expected
    finally:
        root.setLevel(before)
    assert served and served[0].log_level == "info"
