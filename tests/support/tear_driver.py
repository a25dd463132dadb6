"""Run one state-writing PIV operation against a card state file, in its own process.

Used by tests/unit/test_tear.py: the test sets ``QSIGN_SIM_TEAR=point[:nth]`` so
the card's firmware kills this process (exit 86) in the middle of its nth state
write, then inspects what the card left on "EEPROM".

    python tests/support/tear_driver.py STATE SCENARIO [--journal FILE]

With ``--journal`` every state write (the image the card is about to commit),
every completed write and every PIN/PUK comparison is appended to FILE as one
JSON line, written with ``os.write`` so nothing is lost to ``os._exit``. That
lets the test check "equals the new image exactly" and "the comparison only
ran after the decremented counter was durable".

Without a tear the driver prints the final status word as hex and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim import keys
from firmware_sim.card import InProcessConnection, SimulatedCard
from firmware_sim.piv import pad_pin
from firmware_sim.state import CardState, CardStore, ReferenceData
from ground.iso7816 import parse_single, parse_tlv_dict, tlv
from ground.piv import DEFAULT_MANAGEMENT_KEY, PIV_AID

DEFAULT_PIN = "123456"
DEFAULT_PUK = "12345678"
NEW_PIN = "24681357"
NEW_PUK = "87654321"
WRONG_PIN = "999999"
WRONG_PUK = "99999999"

Transmit = Callable[[bytes], tuple[bytes, int]]


# Small APDU builders (ISO 7816-4 short form; every body here is < 256 bytes).


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
         ) -> bytes:
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        out += bytes([le & 0xFF])
    return out


def select_piv() -> bytes:
    return apdu(0x00, 0xA4, 0x04, 0x00, PIV_AID, 0)


def verify(pin: str | None = None) -> bytes:
    """VERIFY PIN; None is the status query (empty data)."""
    return apdu(0x00, 0x20, 0x00, 0x80, b"" if pin is None else pad_pin(pin))


def change_reference(p2: int, old: str, new: str) -> bytes:
    return apdu(0x00, 0x24, 0x00, p2, pad_pin(old) + pad_pin(new))


def reset_retry_counter(puk: str, new_pin: str) -> bytes:
    return apdu(0x00, 0x2C, 0x00, 0x80, pad_pin(puk) + pad_pin(new_pin))


def generate(slot: int, algorithm: int) -> bytes:
    return apdu(0x00, 0x47, 0x00, slot, tlv(0xAC, tlv(0x80, bytes([algorithm]))), 0)


def put_data(tag: int, content: bytes) -> bytes:
    tag_bytes = tag.to_bytes(3, "big")
    return apdu(0x00, 0xDB, 0x3F, 0xFF, tlv(0x5C, tag_bytes) + tlv(0x53, content))


def set_management_key(algorithm: int, key: bytes) -> bytes:
    """Vendor SET MANAGEMENT KEY (as field PIV tokens define it): P1 FF, P2 FF."""
    return apdu(0x00, 0xFF, 0xFF, 0xFF, bytes([algorithm, 0x9B, len(key)]) + key)


def factory_reset() -> bytes:
    """Vendor RESET: allowed only when PIN and PUK are both blocked."""
    return apdu(0x00, 0xFB, 0x00, 0x00)


def get_data(tag: int) -> bytes:
    return apdu(0x00, 0xCB, 0x3F, 0xFF, tlv(0x5C, tag.to_bytes(3, "big")), 0)


def authenticate_management(transmit: Transmit, key: bytes = DEFAULT_MANAGEMENT_KEY,
                            algorithm: int = 0x03) -> None:
    """Mutual authentication with the management key (SP 800-73-4 Part 2 App. A.2);
    3DES (the factory default) or AES."""
    data, sw = transmit(apdu(0x00, 0x87, algorithm, 0x9B, tlv(0x7C, tlv(0x80)), 0))
    if sw != 0x9000:
        raise RuntimeError(f"witness request answered {sw:04X}")
    witness = keys.decrypt_block(algorithm, key,
                                 parse_tlv_dict(parse_single(data, 0x7C))[0x80])
    challenge = os.urandom(keys.block_size(algorithm))
    data, sw = transmit(apdu(0x00, 0x87, algorithm, 0x9B,
                             tlv(0x7C, tlv(0x80, witness) + tlv(0x81, challenge)), 0))
    if sw != 0x9000:
        raise RuntimeError(f"witness answer refused with {sw:04X}")
    answer = parse_tlv_dict(parse_single(data, 0x7C))[0x82]
    if answer != keys.encrypt_block(algorithm, key, challenge):
        raise RuntimeError("the card did not prove the management key")


NEW_MANAGEMENT_KEY = bytes(range(0x40, 0x58))  # 24 bytes: a 3DES key

# A certificate data object's shape (70 cert, 71 CertInfo, FE LRC); the "cert" is filler.
CERT_OBJECT = tlv(0x70, b"\x30\x03\x02\x01\x07") + tlv(0x71, b"\x00") + tlv(0xFE)


@dataclass(frozen=True)
class Scenario:
    """One state-writing operation and what each of its writes must leave behind.

    `prepare` runs in the test process (it may write state) to reach the starting
    state; `setup` runs in the driver before `command` and must not write state, so
    the driver's nth write is the command's nth write. `counters[k]` and
    `pins[k]` are the (PIN, PUK) retry counters and the PIN value the state holds
    after k of the command's writes (k = 0: the starting state).
    """

    name: str
    command: bytes
    expected_sw: int
    counters: tuple[tuple[int, int], ...]
    pins: tuple[str, ...]
    puks: tuple[str, ...]
    prepare: tuple[bytes, ...] = ()
    setup: Callable[[Transmit], None] | None = None
    wrong_credential: bool = False  # the command presents a wrong PIN/PUK
    wipes_application: bool = False  # factory reset: new PIN/PUK, counters full again

    @property
    def writes(self) -> int:
        return len(self.counters) - 1


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("verify-wrong", verify(WRONG_PIN), 0x63C2,
             counters=((3, 3), (2, 3)), pins=(DEFAULT_PIN,) * 2, puks=(DEFAULT_PUK,) * 2,
             wrong_credential=True),
    Scenario("verify-right", verify(DEFAULT_PIN), 0x9000,
             counters=((3, 3), (2, 3), (3, 3)), pins=(DEFAULT_PIN,) * 3,
             puks=(DEFAULT_PUK,) * 3),
    # A right PIN after one miss: the restore must not come back before it is earned.
    Scenario("verify-right-after-miss", verify(DEFAULT_PIN), 0x9000,
             counters=((2, 3), (1, 3), (3, 3)), pins=(DEFAULT_PIN,) * 3,
             puks=(DEFAULT_PUK,) * 3, prepare=(verify(WRONG_PIN),)),
    Scenario("change-pin", change_reference(0x80, DEFAULT_PIN, NEW_PIN), 0x9000,
             counters=((3, 3), (2, 3), (3, 3), (3, 3)),
             pins=(DEFAULT_PIN, DEFAULT_PIN, DEFAULT_PIN, NEW_PIN), puks=(DEFAULT_PUK,) * 4),
    Scenario("change-pin-wrong", change_reference(0x80, WRONG_PIN, NEW_PIN), 0x63C2,
             counters=((3, 3), (2, 3)), pins=(DEFAULT_PIN,) * 2, puks=(DEFAULT_PUK,) * 2,
             wrong_credential=True),
    Scenario("change-puk", change_reference(0x81, DEFAULT_PUK, NEW_PUK), 0x9000,
             counters=((3, 3), (3, 2), (3, 3), (3, 3)), pins=(DEFAULT_PIN,) * 4,
             puks=(DEFAULT_PUK, DEFAULT_PUK, DEFAULT_PUK, NEW_PUK)),
    # Unblock a blocked PIN with the PUK.
    Scenario("reset-retry-counter", reset_retry_counter(DEFAULT_PUK, NEW_PIN), 0x9000,
             counters=((0, 3), (0, 2), (0, 3), (3, 3)),
             pins=(DEFAULT_PIN, DEFAULT_PIN, DEFAULT_PIN, NEW_PIN), puks=(DEFAULT_PUK,) * 4,
             prepare=(verify(WRONG_PIN),) * 3),
    Scenario("reset-retry-counter-wrong-puk", reset_retry_counter(WRONG_PUK, NEW_PIN), 0x63C2,
             counters=((0, 3), (0, 2)), pins=(DEFAULT_PIN,) * 2, puks=(DEFAULT_PUK,) * 2,
             prepare=(verify(WRONG_PIN),) * 3, wrong_credential=True),
    Scenario("generate-p256", generate(0x9A, 0x11), 0x9000,
             counters=((3, 3), (3, 3)), pins=(DEFAULT_PIN,) * 2, puks=(DEFAULT_PUK,) * 2,
             setup=authenticate_management),
    Scenario("put-data", put_data(0x5FC105, CERT_OBJECT), 0x9000,
             counters=((3, 3), (3, 3)), pins=(DEFAULT_PIN,) * 2, puks=(DEFAULT_PUK,) * 2,
             setup=authenticate_management),
    Scenario("set-management-key", set_management_key(0x03, NEW_MANAGEMENT_KEY), 0x9000,
             counters=((3, 3), (3, 3)), pins=(DEFAULT_PIN,) * 2, puks=(DEFAULT_PUK,) * 2,
             setup=authenticate_management),
    # PIN and PUK both blocked: the vendor RESET brings back the factory values.
    Scenario("factory-reset", factory_reset(), 0x9000,
             counters=((0, 0), (3, 3)), pins=(DEFAULT_PIN,) * 2, puks=(DEFAULT_PUK,) * 2,
             prepare=(verify(WRONG_PIN),) * 3 + (reset_retry_counter(WRONG_PUK, NEW_PIN),) * 3,
             wipes_application=True),
)}


class Journal:
    """Appends JSON lines with os.write: they survive the os._exit of a tear."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(self, event: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(event) + "\n").encode())


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _install_journal(journal: Journal) -> None:
    """Observe state writes and reference comparisons without changing them."""
    original_write = CardStore._write
    original_matches = ReferenceData.matches

    def write(self: CardStore, state: CardState) -> None:
        journal.record({"event": "write", "image": state.to_json()})
        original_write(self, state)
        journal.record({"event": "committed"})

    def matches(self: ReferenceData, padded: bytes) -> bool:
        journal.record({"event": "compare"})
        return original_matches(self, padded)

    CardStore._write = write  # type: ignore[method-assign]
    ReferenceData.matches = matches  # type: ignore[method-assign]


def run(state: Path, scenario: Scenario) -> int:
    card = SimulatedCard.open(state)  # reads QSIGN_SIM_TEAR from the environment
    conn = InProcessConnection(card)
    _, sw = conn.transmit(select_piv())
    if sw != 0x9000:
        raise RuntimeError(f"SELECT answered {sw:04X}")
    if scenario.setup is not None:
        scenario.setup(conn.transmit)
    _, sw = conn.transmit(scenario.command)
    return sw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--journal", type=Path)
    args = parser.parse_args(argv)
    if args.journal is not None:
        _install_journal(Journal(args.journal))
    sw = run(args.state, SCENARIOS[args.scenario])
    print(f"{sw:04X}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
