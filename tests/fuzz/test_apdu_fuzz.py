"""Property tests: whatever bytes reach the card, it answers with a status word.

Issue 2 acceptance: random and malformed APDUs (>= 10,000 cases across this
file) always get at least two bytes ending in a valid ISO 7816-4 status word,
never raise and never hit the engine's "unexpected fault" net (a firmware bug
turned into 6F00); afterwards the card still selects PIV with 9000 and its state
file still loads. One fresh card per test function, shared by its examples:
state (burnt retries, keys, objects, open chains) carries over between examples,
which is more hostile than a fresh card each time.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.card import InProcessConnection, SimulatedCard
from firmware_sim.piv import pad_pin
from firmware_sim.state import CardStore
from ground.iso7816 import tlv
from tests.support.tear_driver import (
    authenticate_management,
    generate,
    reset_retry_counter,
    select_piv,
    verify,
)

# Examples per test; the sum is what the ">= 10,000 cases" counts.
EXAMPLES = {
    "arbitrary_bytes": 2000,
    "arbitrary_bytes_selected": 2000,
    "extended_bodies": 500,
    "structured": 2000,
    "piv_commands": 1800,
    "piv_commands_authenticated": 1500,
    "chained_sequences": 800,
    "response_chaining": 200,
    "chained_put_data": 200,
}
assert sum(EXAMPLES.values()) >= 10_000


def fuzz_settings(name: str) -> settings:
    # One card per test function on purpose; the health check would flag that.
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )


PIV_INS = [0xA4, 0xCB, 0x20, 0x24, 0x2C, 0x47, 0x87, 0xDB, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFD,
           0xFF, 0xC0]
# With PIN and management key in hand, weighted toward the commands that do the most
# (signatures, key agreement, generation, writes, attestation). VERIFY, CHANGE, RESET
# RETRY COUNTER, SET PIN RETRIES and RESET are left out: they would clear the PIN.
_AUTHENTICATED_INS = [0x87] * 4 + [0x47, 0xDB, 0xDB, 0xF9, 0xF9, 0xFF, 0xF7, 0xCB, 0xC0, 0xA4,
                                   0xF8, 0xFD]
INTERESTING_P = [0x00, 0x01, 0x03, 0x04, 0x07, 0x11, 0x14, 0x3F, 0x80, 0x81, 0x82, 0x95, 0x9A,
                 0x9B, 0x9C, 0x9D, 0x9E, 0xF9, 0xFE, 0xFF]
OBJECT_TAGS = [0x7E, 0x5FC101, 0x5FC102, 0x5FC103, 0x5FC105, 0x5FC107, 0x5FC10A, 0x5FC10C,
               0x5FC121, 0x5FC123, 0x5FFF00, 0x5FFF01, 0x5FC0FF, 0x00, 0x5C]
TLV_TAGS = [0x53, 0x5C, 0x70, 0x71, 0x7C, 0x7E, 0x80, 0x81, 0x82, 0x85, 0xAA, 0xAB, 0xAC, 0xFE,
            0x7F49, 0x5F2F]
_SLOTS = [0x9A, 0x9C, 0x9D, 0x9E, 0x82]
# P1/P2 pairs each INS accepts, so fuzzed data reaches the handlers' data checks.
VALID_P1P2: dict[int, list[tuple[int, int]]] = {
    0xA4: [(0x04, 0x00)],
    0xCB: [(0x3F, 0xFF)],
    0xDB: [(0x3F, 0xFF)],
    0x20: [(0x00, 0x80), (0xFF, 0x80)],
    0x24: [(0x00, 0x80), (0x00, 0x81)],
    0x2C: [(0x00, 0x80)],
    0x47: [(0x00, slot) for slot in _SLOTS],
    0x87: [(0x03, 0x9B), (0x08, 0x9B), (0x11, 0x9A), (0x14, 0x9C), (0x11, 0x9D), (0x11, 0x9E),
           (0x07, 0x82), (0x11, 0x95)],
    0xF7: [(0x00, ref) for ref in (0x80, 0x81, 0x9B, 0xF9, 0x95, *_SLOTS)],
    0xF8: [(0x00, 0x00)],
    0xF9: [(slot, 0x00) for slot in (*_SLOTS, 0x95)],
    0xFA: [(0x03, 0x03), (0x01, 0x0F), (0x00, 0x10)],
    0xFB: [(0x00, 0x00)],
    0xFD: [(0x00, 0x00)],
    0xFF: [(0xFF, 0xFF), (0xFF, 0xFE)],
    0xC0: [(0x00, 0x00)],
}
# Valid uncompressed EC points, so key agreement (tag 85) can succeed.
_PEER_POINTS = [
    ec.generate_private_key(curve).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    for curve in (ec.SECP256R1(), ec.SECP384R1())
]
# RSA-2048 generation costs ~100 ms per example; valid key types here are the EC ones.
_FAST_ALGORITHMS = [0x11, 0x14, 0x11, 0x14, 0x03, 0x06, 0x08, 0x00, 0xFF]
_DEFAULT_PIN = "123456"
_DEFAULT_PUK = "12345678"


class FaultLog(logging.Handler):
    """Collects ERROR records from the firmware: the engine logs swallowed exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def fault_log() -> Iterator[FaultLog]:
    handler = FaultLog()
    logger = logging.getLogger("firmware_sim")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


class Probe:
    """Sends raw APDUs to one card and checks every answer and the card afterwards."""

    def __init__(self, card: SimulatedCard, state: Path, faults: FaultLog) -> None:
        self.card = card
        self.state = state
        self.faults = faults
        self.conn = InProcessConnection(card)
        self.chain_open = False  # a command chain may be open since the last SELECT

    def send(self, command: bytes) -> tuple[bytes, int]:
        response = self.card.transmit(command)
        assert isinstance(response, bytes) and len(response) >= 2, response
        sw1, sw2 = response[-2], response[-1]
        # ISO 7816-4 §5.6: SW1 is 61..6F or 90; 9000 is the only 90xx.
        assert 0x61 <= sw1 <= 0x6F or (sw1, sw2) == (0x90, 0x00), f"bad SW {response[-2:].hex()}"
        if sw1 not in (0x90, 0x61):
            assert len(response) == 2, "an error or warning carries no data"
        if self.faults.records:
            record = self.faults.records[0]
            text = logging.Formatter().format(record)
            raise AssertionError(f"firmware fault on {command.hex()}:\n{text}")
        if command[:1] and command[0] & 0x10 and response == b"\x90\x00":
            self.chain_open = True
        return response[:-2], (sw1 << 8) | sw2

    def select(self) -> None:
        """SELECT PIV must answer 9000. After an open command chain the first command
        belongs to that chain (ISO 7816-4 §5.1.1.1: joined, or refused with 6883), so
        only then the card gets a second SELECT."""
        _, sw = self.send(select_piv())
        if sw != 0x9000 and self.chain_open:
            _, sw = self.send(select_piv())
        assert sw == 0x9000, f"SELECT answered {sw:04X}"
        self.chain_open = False

    def check_card(self) -> None:
        self.select()
        loaded = CardStore.load(self.state).state  # never half-written, never unreadable
        assert 0 <= loaded.pin.retries_left <= loaded.pin.max_retries
        assert 0 <= loaded.puk.retries_left <= loaded.puk.max_retries

    def survives(self, *commands: bytes) -> None:
        """Each command answered as ISO 7816-4 allows, then the card checked: the property
        every fuzz test here asserts."""
        for command in commands:
            self.send(command)
        self.check_card()

    def authenticate(self) -> None:
        """PIN verified (if not still) and management key authenticated, for this example."""
        self.select()
        status = self.send(verify(None))[1]
        if status == 0x6983:  # a random VERIFY burnt the PIN: unblock it as a host would
            assert self.send(reset_retry_counter(_DEFAULT_PUK, _DEFAULT_PIN))[1] == 0x9000
        if status != 0x9000:
            assert self.send(verify(_DEFAULT_PIN))[1] == 0x9000
        # A fuzzed SET MANAGEMENT KEY may have succeeded: the harness reads the current key.
        mgm = CardStore.load(self.state).state.management_key
        authenticate_management(self.send, mgm.key, mgm.algorithm)


@pytest.fixture
def probe(sim: SimulatedCard, card_state: Path, fault_log: FaultLog) -> Probe:
    return Probe(sim, card_state, fault_log)


@pytest.fixture
def provisioned_probe(probe: Probe) -> Probe:
    """A card with keys in the slots (EC and one RSA) and a certificate object."""
    probe.authenticate()
    for slot, algorithm in ((0x9A, 0x11), (0x9C, 0x14), (0x9D, 0x11), (0x9E, 0x11),
                            (0x82, 0x07)):
        sw = probe.send(generate(slot, algorithm))[1]
        assert sw == 0x9000 or sw >> 8 == 0x61  # an RSA public key needs GET RESPONSE
    return probe


# Encoding -------------------------------------------------------------------


def encode(cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None,
           extended: bool) -> bytes:
    """ISO 7816-3 §12.1.3 cases 1-4, short or extended; `le` 0 means 'maximum'."""
    header = bytes([cla, ins, p1, p2])
    extended = extended or len(data) > 255
    if not extended:
        body = (bytes([len(data)]) + data) if data else b""
        if le is not None:
            body += bytes([le & 0xFF])
        return header + body
    body = (b"\x00" + len(data).to_bytes(2, "big") + data) if data else b""
    if le is not None:
        body += (b"" if data else b"\x00") + (le & 0xFFFF).to_bytes(2, "big")
    return header + body


bytes_or_interesting = st.one_of(st.sampled_from(INTERESTING_P), st.integers(0, 255))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """Sometimes truncate, extend or flip a byte of well-formed data."""
    how = draw(st.sampled_from(["keep"] * 4 + ["truncate", "extend", "flip"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "extend":
        return data + draw(st.binary(min_size=1, max_size=8))
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    return data


def tlv_trees(max_leaves: int = 6) -> st.SearchStrategy[bytes]:
    """Well-formed BER-TLV with PIV's tags (and any others), nested a few levels."""
    tags = st.one_of(st.sampled_from(TLV_TAGS), st.integers(0, 0xFFFF))
    leaves = st.builds(tlv, tags, st.binary(max_size=48))
    return st.recursive(
        leaves,
        lambda children: st.builds(lambda t, kids: tlv(t, b"".join(kids)), tags,
                                   st.lists(children, max_size=3)),
        max_leaves=max_leaves,
    )


def pin_field() -> st.SearchStrategy[bytes]:
    digits = st.text(alphabet="0123456789", min_size=0, max_size=8)
    return st.one_of(
        digits.map(pad_pin),
        st.binary(min_size=8, max_size=8),
        st.binary(max_size=12),
    )


@st.composite
def piv_data(draw: st.DrawFn, ins: int) -> bytes:
    """Data shaped like what each PIV command expects, then perhaps broken."""
    kind = draw(st.sampled_from([0, 1, 2, 2, 2, 2]))  # mostly the command's own shape
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return b"".join(draw(st.lists(tlv_trees(), max_size=3)))
    if ins in (0xCB, 0xDB):
        tag = draw(st.sampled_from(OBJECT_TAGS))
        size = 1 if tag <= 0xFF else 3
        data = tlv(0x5C, tag.to_bytes(size, "big"))
        if ins == 0xDB:
            data += tlv(0x53, draw(st.one_of(tlv_trees(), st.binary(max_size=100))))
    elif ins in (0x20,):
        data = draw(pin_field())
    elif ins in (0x24, 0x2C):
        data = draw(pin_field()) + draw(pin_field())
    elif ins == 0x47:
        template = tlv(0x80, bytes([draw(st.sampled_from(_FAST_ALGORITHMS))]))
        if draw(st.booleans()):
            template += tlv(0xAA, bytes([draw(st.integers(0, 4))]))
        if draw(st.booleans()):
            template += tlv(0xAB, bytes([draw(st.integers(0, 4))]))
        data = tlv(0xAC, template)
    elif ins == 0x87 and draw(st.integers(0, 2)):
        # The shapes a signature or key agreement takes: 82 00, then 81 or 85.
        operand = draw(st.one_of(
            st.builds(lambda t, v: tlv(t, v), st.just(0x81),
                      st.one_of(st.binary(min_size=1, max_size=48),
                                st.binary(min_size=256, max_size=256))),
            st.builds(lambda v: tlv(0x85, v), st.one_of(st.sampled_from(_PEER_POINTS),
                                                       st.binary(max_size=97))),
        ))
        data = tlv(0x7C, tlv(0x82) + operand)
    elif ins == 0x87:
        items = draw(st.lists(
            st.tuples(st.sampled_from([0x80, 0x81, 0x82, 0x85]),
                      st.one_of(st.just(b""), st.binary(min_size=1, max_size=8),
                                st.binary(min_size=16, max_size=16),
                                st.binary(min_size=32, max_size=32),
                                st.binary(min_size=48, max_size=48),
                                st.binary(min_size=65, max_size=65),
                                st.binary(min_size=256, max_size=256))),
            max_size=3))
        data = tlv(0x7C, b"".join(tlv(t, v) for t, v in items))
    elif ins == 0xFF:
        algorithm = draw(st.sampled_from([0x03, 0x08, 0x0A, 0x0C, 0x11, 0x00]))
        key = draw(st.one_of(st.sampled_from([16, 24, 32]).flatmap(
            lambda n: st.binary(min_size=n, max_size=n)), st.binary(max_size=33)))
        length = draw(st.one_of(st.just(len(key)), st.integers(0, 255)))
        data = bytes([algorithm, draw(st.sampled_from([0x9B, 0x9B, 0x9A])), length]) + key
    else:
        data = draw(st.binary(max_size=16))
    return draw(mutated(data))


@st.composite
def piv_commands(draw: st.DrawFn, allowed_ins: list[int]) -> bytes:
    ins = draw(st.sampled_from(allowed_ins))
    # Mostly a plain CLA and accepted P1/P2: the handlers' own checks are the target.
    cla = draw(st.sampled_from([0x00] * 7 + [0x10, 0x80, 0x0C, 0x01]))
    if draw(st.integers(0, 3)):
        p1, p2 = draw(st.sampled_from(VALID_P1P2[ins]))
    else:
        p1, p2 = draw(bytes_or_interesting), draw(bytes_or_interesting)
    data = draw(piv_data(ins))
    le = draw(st.one_of(st.none(), st.integers(0, 256), st.integers(0, 65535)))
    extended = draw(st.booleans()) or (le is not None and le > 256)
    return encode(cla, ins, p1, p2, data, le, extended)


# Tests ------------------------------------------------------------------------


@fuzz_settings("arbitrary_bytes")
@given(raw=st.binary(min_size=0, max_size=300))
def test_arbitrary_bytes(probe: Probe, raw: bytes) -> None:
    probe.survives(raw)


@fuzz_settings("arbitrary_bytes_selected")
@given(raw=st.binary(min_size=0, max_size=300))
def test_arbitrary_bytes_after_select(probe: Probe, raw: bytes) -> None:
    # With PIV selected the bytes reach the applet's handlers, not just the framing.
    probe.select()
    probe.survives(raw)


@st.composite
def extended_apdus(draw: st.DrawFn) -> bytes:
    """Extended-length bodies (up to 70 KB) with honest or lying Lc/Le fields."""
    header = bytes([draw(st.sampled_from([0x00, 0x10, 0x80])),
                    draw(st.sampled_from([*PIV_INS, 0x00])), draw(bytes_or_interesting),
                    draw(bytes_or_interesting)])
    size = draw(st.one_of(st.integers(256, 9000), st.integers(9000, 70_000)))
    # Built from a seed: hypothesis would refuse to draw 70 KB byte by byte.
    payload = random.Random(draw(st.integers(0, 2**32))).randbytes(size)
    lc = draw(st.one_of(st.just(size), st.integers(0, 65535)))
    le = draw(st.one_of(st.just(b""), st.binary(min_size=2, max_size=2)))
    body = b"\x00" + (lc & 0xFFFF).to_bytes(2, "big") + payload[: max(lc, 1)] + le
    return header + draw(mutated(body))


@fuzz_settings("extended_bodies")
@given(raw=extended_apdus())
def test_extended_bodies(probe: Probe, raw: bytes) -> None:
    probe.select()
    probe.survives(raw)


@fuzz_settings("structured")
@given(
    cla=st.one_of(st.sampled_from([0x00, 0x10, 0x80, 0x84, 0x0C, 0x01, 0xFF, 0x20]),
                  st.integers(0, 255)),
    ins=st.one_of(st.sampled_from(PIV_INS), st.integers(0, 255)),
    p1=bytes_or_interesting,
    p2=bytes_or_interesting,
    data=st.binary(max_size=300),
    le=st.one_of(st.none(), st.integers(0, 256), st.integers(0, 65535)),
    extended=st.booleans(),
)
def test_structured_apdus(probe: Probe, cla: int, ins: int, p1: int, p2: int, data: bytes,
                          le: int | None, extended: bool) -> None:
    probe.select()
    probe.survives(encode(cla, ins, p1, p2, data, le, extended))


@fuzz_settings("piv_commands")
@given(commands=st.lists(piv_commands(PIV_INS), min_size=1, max_size=3))
def test_piv_commands_with_tlv_data(probe: Probe, commands: list[bytes]) -> None:
    # Unauthenticated: wrong PINs and PUKs burn the counters; that is allowed here.
    probe.select()
    probe.survives(*commands)


@fuzz_settings("piv_commands_authenticated")
@given(commands=st.lists(piv_commands(_AUTHENTICATED_INS), min_size=1, max_size=3))
def test_piv_commands_authenticated(provisioned_probe: Probe, commands: list[bytes]) -> None:
    # PIN verified and management key authenticated: GENERATE, PUT DATA, signing,
    # ECDH, ATTEST and SET MANAGEMENT KEY get past their access checks.
    provisioned_probe.authenticate()
    provisioned_probe.survives(*commands)


@st.composite
def chain_links(draw: st.DrawFn) -> bytes:
    ins = draw(st.sampled_from([0xDB, 0x87, 0x47, 0xCB, 0x20, 0xC0, 0xA4]))
    p1, p2 = draw(st.sampled_from([(0x3F, 0xFF), (0x07, 0x9A), (0x11, 0x9A), (0x03, 0x9B),
                                   (0x04, 0x00), (0x00, 0x80), (0x00, 0x00)]))
    cla = 0x10 if draw(st.integers(0, 3)) else 0x00
    data = draw(st.one_of(st.binary(max_size=255), tlv_trees()))[:255]
    le = draw(st.one_of(st.none(), st.integers(0, 256)))
    return encode(cla, ins, p1, p2, data, le, extended=False)


@fuzz_settings("chained_sequences")
@given(links=st.lists(chain_links(), min_size=1, max_size=8), authenticated=st.booleans())
def test_chained_sequences(probe: Probe, links: list[bytes], authenticated: bool) -> None:
    # Random chains: matching and mismatched headers, abandoned chains, GET RESPONSE mid-chain.
    if authenticated:
        probe.authenticate()
    else:
        probe.select()
    probe.survives(*links)


@fuzz_settings("response_chaining")
@given(les=st.lists(st.integers(1, 256), min_size=1, max_size=40))
def test_response_chaining_reassembles(probe: Probe, les: list[int]) -> None:
    """61XX + GET RESPONSE with any Le sequence yields exactly the one-shot response."""
    probe.select()
    request = tlv(0x5C, (0x5FFF01).to_bytes(3, "big"))  # attestation certificate, ~500 bytes
    whole, sw = probe.send(encode(0x00, 0xCB, 0x3F, 0xFF, request, 0, extended=True))
    assert sw == 0x9000 and len(whole) > 256
    data, sw = probe.send(encode(0x00, 0xCB, 0x3F, 0xFF, request, les[0], extended=False))
    got, asked = data, les[0]
    for le in les[1:]:
        if sw & 0xFF00 != 0x6100:
            break
        assert len(data) == asked, "a chunk followed by 61XX is as long as Le allowed"
        data, sw = probe.send(encode(0x00, 0xC0, 0x00, 0x00, b"", le, extended=False))
        got, asked = got + data, le
    while sw & 0xFF00 == 0x6100:
        data, sw = probe.send(encode(0x00, 0xC0, 0x00, 0x00, b"", sw & 0xFF, extended=False))
        got += data
    assert sw == 0x9000
    assert got == whole
    probe.check_card()


@fuzz_settings("chained_put_data")
@given(content=st.binary(min_size=0, max_size=3000),
       cuts=st.lists(st.integers(1, 255), min_size=0, max_size=30))
def test_chained_put_data_round_trips(probe: Probe, content: bytes, cuts: list[int]) -> None:
    """A PUT DATA split into chained pieces of any size stores exactly the joined data."""
    probe.authenticate()
    body = tlv(0x5C, (0x5FC105).to_bytes(3, "big")) + tlv(0x53, content)
    pieces, rest = [], body
    for cut in cuts:
        if len(rest) <= cut:
            break
        pieces.append(rest[:cut])
        rest = rest[cut:]
    while len(rest) > 255:
        pieces.append(rest[:255])
        rest = rest[255:]
    for piece in pieces:
        assert probe.send(encode(0x10, 0xDB, 0x3F, 0xFF, piece, None, extended=False))[1] == 0x9000
    assert probe.send(encode(0x00, 0xDB, 0x3F, 0xFF, rest, None, extended=False))[1] == 0x9000
    data, sw = probe.send(encode(0x00, 0xCB, 0x3F, 0xFF,
                                 tlv(0x5C, (0x5FC105).to_bytes(3, "big")), 0, extended=True))
    if content:
        assert (sw, data) == (0x9000, tlv(0x53, content))
    else:
        assert sw == 0x6A82  # writing empty content deletes the object
    probe.check_card()
