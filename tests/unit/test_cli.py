"""`qsign card init | status | manufacturer-root`, run as a user runs them (issue 2, CLI).

Every command runs in a subprocess (`python -m qsign ...`) with its own
manufacturer directory, so the output, the exit code and stderr are what a user
or a later check sees.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from firmware_sim.attestation import MANUFACTURER_ENV, ROOT_CERT_FILE
from firmware_sim.card import InProcessConnection, SimulatedCard
from firmware_sim.faults import TEAR_ENV
from firmware_sim.piv import pad_pin
from firmware_sim.state import CardStore
from ground.iso7816 import parse_tlv_dict
from ground.piv import ATTESTATION_OBJECT, DEFAULT_MANAGEMENT_KEY
from tests.support.tear_driver import (
    CERT_OBJECT,
    authenticate_management,
    change_reference,
    generate,
    put_data,
    select_piv,
    verify,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def maker_dir(tmp_path: Path) -> Path:
    """A manufacturer directory of this test's own; the CLI creates the root in it."""
    return tmp_path / "manufacturer"


def qsign(maker_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TEAR_ENV}
    env[MANUFACTURER_ENV] = str(maker_dir)
    return subprocess.run([sys.executable, "-m", "qsign", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def init_card(maker_dir: Path, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    result = qsign(maker_dir, "card", "init", "--state", str(state), *extra)
    assert result.returncode == 0, result.stderr
    return result


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit code 2, one readable `qsign: error:` line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("qsign: error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# init -----------------------------------------------------------------------


def test_init_prints_serial_and_factory_credentials(maker_dir: Path, tmp_path: Path) -> None:
    state_path = tmp_path / "card.json"
    out = init_card(maker_dir, state_path).stdout

    state = CardStore.load(state_path).state
    assert re.search(rf"^serial: {state.serial}$", out, re.MULTILINE), out
    assert re.search(r"^PIN: 123456\b", out, re.MULTILINE), out
    assert re.search(r"^PUK: 12345678\b", out, re.MULTILINE), out
    assert re.search(r"^management key: default\b", out, re.MULTILINE), out
    assert re.search(r"^profile: default$", out, re.MULTILINE), out
    # What it prints is what the card holds.
    assert state.pin.matches(pad_pin("123456")) and state.pin.is_default
    assert state.puk.matches(pad_pin("12345678")) and state.puk.is_default
    assert state.management_key.key == DEFAULT_MANAGEMENT_KEY
    assert state.management_key.is_default
    assert (state.pin.retries_left, state.puk.retries_left) == (3, 3)
    # The file holds private keys: owner only.
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert (maker_dir / ROOT_CERT_FILE).exists()


def test_init_with_a_chosen_serial(maker_dir: Path, tmp_path: Path) -> None:
    out = init_card(maker_dir, tmp_path / "card.json", "--serial", "12345678").stdout
    assert re.search(r"^serial: 12345678$", out, re.MULTILINE), out
    assert CardStore.load(tmp_path / "card.json").state.serial == 12345678


def test_init_refuses_to_overwrite_a_card(maker_dir: Path, tmp_path: Path) -> None:
    state_path = tmp_path / "card.json"
    init_card(maker_dir, state_path)
    before = state_path.read_bytes()

    result = qsign(maker_dir, "card", "init", "--state", str(state_path))

    assert_clean_failure(result, str(state_path), "already exists")
    assert "serial:" not in result.stdout
    assert state_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "manufacturer"]


def test_init_refuses_to_overwrite_any_file(maker_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("not a card\n")
    assert_clean_failure(qsign(maker_dir, "card", "init", "--state", str(other)),
                         "already exists")
    assert other.read_text() == "not a card\n"


@pytest.mark.parametrize(("profile", "four_digit_pin_sw"), [
    ("default", 0x9000),  # the signature service's rule: 4 to 8 digits
    ("piv-strict", 0x6A80),  # SP 800-73-4: 6 to 8 digits
])
def test_init_profile(maker_dir: Path, tmp_path: Path, profile: str,
                      four_digit_pin_sw: int) -> None:
    state_path = tmp_path / "card.json"
    out = init_card(maker_dir, state_path, "--profile", profile).stdout
    assert re.search(rf"^profile: {profile}$", out, re.MULTILINE), out
    assert CardStore.load(state_path).state.profile == profile
    conn = InProcessConnection(SimulatedCard.open(state_path, tear=None))
    assert conn.transmit(select_piv())[1] == 0x9000
    assert conn.transmit(change_reference(0x80, "123456", "1234"))[1] == four_digit_pin_sw


def test_init_unknown_profile_is_a_usage_error(maker_dir: Path, tmp_path: Path) -> None:
    result = qsign(maker_dir, "card", "init", "--state", str(tmp_path / "c.json"),
                   "--profile", "nonesuch")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "invalid choice" in result.stderr
    assert not (tmp_path / "c.json").exists()


# status -----------------------------------------------------------------------


def _personalise(state_path: Path) -> None:
    """Keys in 9A and 9C, a certificate for 9A, one wrong PIN: as a host would do it."""
    conn = InProcessConnection(SimulatedCard.open(state_path, tear=None))
    assert conn.transmit(select_piv())[1] == 0x9000
    authenticate_management(conn.transmit)
    assert conn.transmit(generate(0x9A, 0x11))[1] == 0x9000
    assert conn.transmit(generate(0x9C, 0x14))[1] == 0x9000
    assert conn.transmit(put_data(0x5FC105, CERT_OBJECT))[1] == 0x9000
    assert conn.transmit(verify("000000"))[1] == 0x63C2


def test_status_of_a_fresh_card(maker_dir: Path, tmp_path: Path) -> None:
    state_path = tmp_path / "card.json"
    init_card(maker_dir, state_path)
    result = qsign(maker_dir, "card", "status", "--state", str(state_path))
    assert result.returncode == 0, result.stderr
    serial = CardStore.load(state_path).state.serial
    assert f"serial: {serial}" in result.stdout
    assert "PIN retries: 3/3 (default PIN)" in result.stdout
    assert "PUK retries: 3/3" in result.stdout
    assert "management key: default" in result.stdout
    assert "slots: none in use" in result.stdout


def test_status_shows_generated_keys_and_retries(maker_dir: Path, tmp_path: Path) -> None:
    state_path = tmp_path / "card.json"
    init_card(maker_dir, state_path)
    _personalise(state_path)
    serial = CardStore.load(state_path).state.serial

    result = qsign(maker_dir, "card", "status", "--state", str(state_path))

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"serial: {serial}" in out
    assert "PIN retries: 2/3" in out
    assert "PUK retries: 3/3" in out
    slot_lines = [line for line in out.splitlines() if line.startswith("slot ")]
    assert len(slot_lines) == 2, out
    assert "slot 9A: ECC_P256" in slot_lines[0] and "certificate present" in slot_lines[0]
    assert "slot 9C: ECC_P384" in slot_lines[1] and "certificate absent" in slot_lines[1]


def test_status_json(maker_dir: Path, tmp_path: Path) -> None:
    state_path = tmp_path / "card.json"
    init_card(maker_dir, state_path, "--profile", "piv-strict")
    _personalise(state_path)

    result = qsign(maker_dir, "card", "status", "--state", str(state_path), "--json")

    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)  # nothing but the JSON document on stdout
    assert info["serial"] == CardStore.load(state_path).state.serial
    assert info["profile"] == "piv-strict"
    assert (info["pin_retries"], info["pin_max_retries"]) == (2, 3)
    assert (info["puk_retries"], info["puk_max_retries"]) == (3, 3)
    assert info["management_key_is_default"] is True
    slots = {slot["slot"]: slot for slot in info["slots"]}
    assert set(slots) == {"9A", "9C"}
    assert slots["9A"]["key_type"] == "ECC_P256" and slots["9A"]["has_certificate"] is True
    assert slots["9C"]["key_type"] == "ECC_P384" and slots["9C"]["has_certificate"] is False
    # PIV's slot policy: 9C needs the PIN before every signature.
    assert slots["9C"]["pin_policy"] == "ALWAYS"


def test_status_of_a_missing_file(maker_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    for extra in ((), ("--json",)):
        result = qsign(maker_dir, "card", "status", "--state", str(missing), *extra)
        assert_clean_failure(result, str(missing), "qsign card init")
        assert result.stdout == ""


def _valid_state_json(maker_dir: Path, tmp_path: Path) -> dict[str, Any]:
    state_path = tmp_path / "good.json"
    init_card(maker_dir, state_path)
    raw: dict[str, Any] = json.loads(state_path.read_bytes())
    state_path.unlink()
    return raw


Corruption = Callable[[dict[str, Any]], bytes]
CORRUPTIONS: dict[str, Corruption] = {
    "empty": lambda good: b"",
    "garbage": lambda good: b"\x00\x01 not json at all",
    "not-utf8": lambda good: b"\xff\xfe\xfa\x80\x81",
    "truncated": lambda good: json.dumps(good).encode()[:300],
    "json-array": lambda good: b"[1, 2, 3]",
    "json-string": lambda good: b'"card"',
    "format-99": lambda good: json.dumps({**good, "format": 99}).encode(),
    "no-format": lambda good: json.dumps({k: v for k, v in good.items()
                                          if k != "format"}).encode(),
    "missing-pin": lambda good: json.dumps({k: v for k, v in good.items()
                                            if k != "pin"}).encode(),
    "pin-not-object": lambda good: json.dumps({**good, "pin": 5}).encode(),
    "keys-as-list": lambda good: json.dumps({**good, "keys": []}).encode(),
    "objects-as-list": lambda good: json.dumps({**good, "objects": [1]}).encode(),
    "serial-text": lambda good: json.dumps({**good, "serial": "abc"}).encode(),
    "bad-hex": lambda good: json.dumps({**good, "objects": {"5FC102": "zz"}}).encode(),
    "version-short": lambda good: json.dumps({**good, "firmware_version": [1]}).encode(),
    "deeply-nested": lambda good: b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_status_of_a_corrupt_file(maker_dir: Path, tmp_path: Path, corruption: str) -> None:
    good = _valid_state_json(maker_dir, tmp_path)
    bad = tmp_path / "card.json"
    bad.write_bytes(CORRUPTIONS[corruption](good))
    for extra in ((), ("--json",)):
        result = qsign(maker_dir, "card", "status", "--state", str(bad), *extra)
        assert_clean_failure(result, str(bad))
        assert result.stdout == ""


def test_status_of_a_directory(maker_dir: Path, tmp_path: Path) -> None:
    assert_clean_failure(qsign(maker_dir, "card", "status", "--state", str(tmp_path)),
                         str(tmp_path))


# manufacturer-root ----------------------------------------------------------------


def test_manufacturer_root_prints_the_pem_root(maker_dir: Path, tmp_path: Path) -> None:
    state_path = tmp_path / "card.json"
    init_card(maker_dir, state_path)

    result = qsign(maker_dir, "card", "manufacturer-root")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-----BEGIN CERTIFICATE-----\n")
    assert result.stdout.rstrip().endswith("-----END CERTIFICATE-----")
    root = x509.load_pem_x509_certificate(result.stdout.encode())
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    assert root == x509.load_pem_x509_certificate((maker_dir / ROOT_CERT_FILE).read_bytes())
    # The card made by `init` chains to this root: the CA will trust exactly this.
    device_object = CardStore.load(state_path).state.objects[ATTESTATION_OBJECT]
    device = x509.load_der_x509_certificate(parse_tlv_dict(device_object)[0x70])
    device.verify_directly_issued_by(root)
    # Stable: a second call prints the same root.
    assert qsign(maker_dir, "card", "manufacturer-root").stdout == result.stdout


def test_manufacturer_root_with_an_explicit_directory(maker_dir: Path, tmp_path: Path
                                                      ) -> None:
    other = tmp_path / "other-maker"
    explicit = qsign(maker_dir, "card", "manufacturer-root", "--manufacturer", str(other))
    from_env = qsign(maker_dir, "card", "manufacturer-root")
    assert explicit.returncode == 0 and from_env.returncode == 0
    assert (other / ROOT_CERT_FILE).exists()
    # Each directory is its own manufacturer: different roots.
    assert explicit.stdout != from_env.stdout
    x509.load_pem_x509_certificate(explicit.stdout.encode())
