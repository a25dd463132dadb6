"""Tear tests: the card process dies in the middle of a state write (power cut).

For every state-writing PIV operation and every write it makes, and for every
named tear point, a driver process (tests/support/tear_driver.py) runs the
operation with QSIGN_SIM_TEAR set and must die with exit code 86. Then the state
file must parse, equal exactly the last committed image (the old one before the
rename, the new one from the rename on), keep retry counters that never went
back up, leave nothing but the card's own temp file, and the card must open and
work again (STYLE rule 7; issue 2, "Tear tests").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.card import InProcessConnection, SimulatedCard
from firmware_sim.faults import TEAR_ENV, TEAR_EXIT_CODE, TearPoint
from firmware_sim.piv import pad_pin
from firmware_sim.state import CardState, CardStore
from ground.piv import DEFAULT_MANAGEMENT_KEY
from tests.support import tear_driver
from tests.support.tear_driver import CERT_OBJECT, NEW_MANAGEMENT_KEY, SCENARIOS, Scenario

DRIVER = Path(tear_driver.__file__)
REPO = Path(__file__).resolve().parents[2]

TEAR_CASES = [
    pytest.param(name, nth, point, id=f"{name}-write{nth}-{point}")
    for name, scenario in SCENARIOS.items()
    for nth in range(1, scenario.writes + 1)
    for point in TearPoint
]


@pytest.fixture(autouse=True)
def _no_tear_here(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the driver process may tear; SimulatedCard.open in this process reads the env.
    monkeypatch.delenv(TEAR_ENV, raising=False)


def _temp_file(state: Path) -> Path:
    return state.parent / f".{state.name}.tmp"


@pytest.fixture
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the driver logs writes; outside the card's directory, so any other file
    next to the state file is the card's own."""
    return tmp_path_factory.mktemp("journal") / "events.jsonl"


def _prepare(state: Path, scenario: Scenario) -> None:
    """Bring a fresh card to the scenario's starting state, in this process."""
    conn = InProcessConnection(SimulatedCard.open(state, tear=None))
    assert conn.transmit(tear_driver.select_piv())[1] == 0x9000
    for command in scenario.prepare:
        _, sw = conn.transmit(command)
        assert sw in (0x9000, 0x6983) or sw & 0xFFF0 == 0x63C0, f"prepare answered {sw:04X}"
    loaded = CardStore.load(state).state
    assert (loaded.pin.retries_left, loaded.puk.retries_left) == scenario.counters[0]


def _run_driver(state: Path, scenario: Scenario, journal: Path, tear: str | None
                ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TEAR_ENV}
    if tear is not None:
        env[TEAR_ENV] = tear
    return subprocess.run(
        [sys.executable, str(DRIVER), str(state), scenario.name, "--journal", str(journal)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )


def _load_image(path: Path) -> dict[str, Any]:
    """Parse a state image the way the card does; fails on any half-written file."""
    return CardState.from_json(json.loads(path.read_bytes())).to_json()


def _check_expected_values(scenario: Scenario, k: int, state: CardState) -> None:
    """The state after k of the command's writes, from the scenario's own table."""
    assert (state.pin.retries_left, state.puk.retries_left) == scenario.counters[k]
    assert state.pin.matches(pad_pin(scenario.pins[k])), f"PIN after {k} writes"
    assert state.puk.matches(pad_pin(scenario.puks[k])), f"PUK after {k} writes"
    if scenario.name == "generate-p256":
        assert (0x9A in state.keys) == (k >= 1)
        if k >= 1:
            assert state.keys[0x9A].algorithm == 0x11
    if scenario.name == "put-data":
        assert state.objects.get(0x5FC105) == (CERT_OBJECT if k >= 1 else None)
    if scenario.name == "set-management-key":
        assert state.management_key.key == (NEW_MANAGEMENT_KEY if k >= 1
                                             else DEFAULT_MANAGEMENT_KEY)
        assert state.management_key.is_default == (k == 0)


def _check_compare_order(events: list[dict[str, Any]]) -> None:
    """Decrement first: a PIN/PUK comparison only ever follows a completed state write."""
    for i, event in enumerate(events):
        if event["event"] == "compare":
            assert i > 0 and events[i - 1]["event"] == "committed", (
                "a reference value was compared before the decremented counter was durable")


def _check_card_works(state: Path, expected: CardState) -> None:
    """After the tear the card opens, selects, answers the status query and writes again."""
    conn = InProcessConnection(SimulatedCard.open(state, tear=None))
    data, sw = conn.transmit(tear_driver.select_piv())
    assert sw == 0x9000 and data.startswith(b"\x61")
    retries = expected.pin.retries_left
    _, sw = conn.transmit(tear_driver.verify(None))
    assert sw == (0x63C0 | retries if retries else 0x6983)
    _, sw = conn.transmit(tear_driver.get_data(0x5FC102))  # CHUID, free to read
    assert sw == 0x9000
    if retries:
        # A right PIN writes twice more, over the leftover temp file.
        pin = next(v for v in ("123456", tear_driver.NEW_PIN)
                   if expected.pin.matches(pad_pin(v)))
        assert conn.transmit(tear_driver.verify(pin))[1] == 0x9000
        assert conn.transmit(tear_driver.verify(None))[1] == 0x9000
        assert CardStore.load(state).state.pin.retries_left == expected.pin.max_retries
        assert not _temp_file(state).exists()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_without_tear_makes_the_declared_writes(name: str, card_state: Path,
                                                         journal: Path) -> None:
    """The driver's scenarios are what the tear tests assume (write count, SW, result)."""
    scenario = SCENARIOS[name]
    _prepare(card_state, scenario)
    result = _run_driver(card_state, scenario, journal, tear=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{scenario.expected_sw:04X}"
    events = tear_driver.read_journal(journal)
    images = [e["image"] for e in events if e["event"] == "write"]
    assert len(images) == scenario.writes
    assert [e["event"] for e in events].count("committed") == scenario.writes
    _check_compare_order(events)
    final = CardStore.load(card_state).state
    assert final.to_json() == images[-1]
    _check_expected_values(scenario, scenario.writes, final)
    assert sorted(p.name for p in card_state.parent.iterdir()) == [card_state.name]


@pytest.mark.parametrize(("name", "nth", "point"), TEAR_CASES)
def test_tear(name: str, nth: int, point: TearPoint, card_state: Path, journal: Path) -> None:
    scenario = SCENARIOS[name]
    _prepare(card_state, scenario)
    before = CardStore.load(card_state).state
    before_bytes = card_state.read_bytes()

    result = _run_driver(card_state, scenario, journal, tear=f"{point}:{nth}")

    assert result.returncode == TEAR_EXIT_CODE, (
        f"expected a tear (exit {TEAR_EXIT_CODE}), got {result.returncode}\n{result.stderr}")
    events = tear_driver.read_journal(journal)
    images = [e["image"] for e in events if e["event"] == "write"]
    assert len(images) == nth, "the process must die inside the nth write"
    assert [e["event"] for e in events].count("committed") == nth - 1
    _check_compare_order(events)

    # Never half-written: the file parses as a whole card state.
    after_image = _load_image(card_state)
    after = CardStore.load(card_state).state
    committed = nth if point is TearPoint.RENAMED else nth - 1
    expected_image = images[committed - 1] if committed else before.to_json()
    assert after_image == expected_image, (
        "old image before the rename, new image from the rename on")
    if committed == 0:
        assert card_state.read_bytes() == before_bytes
    _check_expected_values(scenario, committed, after)

    # Retry counters never went back up unless a right value earned the restore (or a
    # committed factory reset replaced PIN and PUK altogether).
    for which in ("pin", "puk"):
        old_left = getattr(before, which).retries_left
        new_left = getattr(after, which).retries_left
        if scenario.wrong_credential:
            assert new_left <= old_left, f"{which} retries went back up after a wrong value"
        if new_left > old_left and not (scenario.wipes_application and committed):
            # Only a completed comparison followed by a committed restore may raise it.
            assert "compare" in [e["event"] for e in events] and committed >= 2

    # Nothing on "EEPROM" but the state and, before the rename, the card's own temp file.
    temp = _temp_file(card_state)
    names = {p.name for p in card_state.parent.iterdir()}
    if point is TearPoint.RENAMED:
        assert names == {card_state.name}
    else:
        assert names == {card_state.name, temp.name}
        if point is TearPoint.TEMP_WRITTEN:
            assert _load_image(temp) == images[nth - 1], "temp holds the complete new image"
        else:
            content = temp.read_bytes()
            assert content, "half an image was written before the tear"
            with pytest.raises(ValueError):
                json.loads(content)

    _check_card_works(card_state, after)
