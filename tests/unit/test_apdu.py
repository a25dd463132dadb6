"""The APDU engine: ISO 7816-3 cases, framing errors, CLA checks, command and response chaining."""

from __future__ import annotations

import logging
import random

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from firmware_sim.apdu import MAX_CHAINED_DATA, ApduEngine, CardError, CommandApdu
from firmware_sim.card import InProcessConnection, SimulatedCard
from ground.iso7816 import (
    Tlv,
    TlvError,
    parse_single,
    parse_tlv,
    parse_tlv_dict,
    retries_sw,
    tlv,
)
from tests.support import piv_apdus as piv
from tests.support.piv_apdus import Command, expect_ok, send

SW_OK = 0x9000
HEADER = bytes.fromhex("00CB3FFF")


class RecordingApplet:
    """Stands in for the PIV applet: records what the engine hands it, answers `response`."""

    def __init__(self, response: bytes = b"") -> None:
        self.response = response
        self.commands: list[CommandApdu] = []
        self.resets = 0
        self.fail_with: Exception | None = None

    def process(self, command: CommandApdu) -> bytes:
        self.commands.append(command)
        if self.fail_with is not None:
            raise self.fail_with
        return self.response

    def reset(self) -> None:
        self.resets += 1


def _split(response: bytes) -> tuple[bytes, int]:
    return response[:-2], int.from_bytes(response[-2:], "big")


@pytest.fixture
def selected(connection: InProcessConnection) -> InProcessConnection:
    expect_ok(connection, piv.select())
    return connection


# Parsing: every ISO 7816-3 §12.1.3 case ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "data", "ne", "extended"),
    [
        pytest.param(HEADER, b"", 0, False, id="case1"),
        pytest.param(HEADER + b"\x10", b"", 16, False, id="case2S"),
        pytest.param(HEADER + b"\x00", b"", 256, False, id="case2S-Le00-is-256"),
        pytest.param(HEADER + b"\x02\xaa\xbb", b"\xaa\xbb", 0, False, id="case3S"),
        pytest.param(HEADER + b"\x02\xaa\xbb\x20", b"\xaa\xbb", 32, False, id="case4S"),
        pytest.param(HEADER + b"\x01\xaa\x00", b"\xaa", 256, False, id="case4S-Le00"),
        pytest.param(HEADER + b"\x00\x01\x2c", b"", 300, True, id="case2E"),
        pytest.param(HEADER + b"\x00\x00\x00", b"", 65536, True, id="case2E-Le0000"),
        pytest.param(HEADER + b"\x00\x01\x2c" + bytes(300), bytes(300), 0, True, id="case3E"),
        pytest.param(HEADER + b"\x00\x00\x01\xaa", b"\xaa", 0, True, id="case3E-short-data"),
        pytest.param(HEADER + b"\x00\x01\x2c" + bytes(300) + b"\x01\x00", bytes(300), 256,
                     True, id="case4E"),
        pytest.param(HEADER + b"\x00\x00\x01\xaa\x00\x00", b"\xaa", 65536, True,
                     id="case4E-Le0000"),
    ],
)
def test_parse_every_case(raw: bytes, data: bytes, ne: int, extended: bool) -> None:
    cmd = CommandApdu.parse(raw)
    assert (cmd.cla, cmd.ins, cmd.p1, cmd.p2) == (0x00, 0xCB, 0x3F, 0xFF)
    assert cmd.data == data
    assert cmd.ne == ne
    assert cmd.extended is extended


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00", id="1-byte"),
        pytest.param(b"\x00\xa4", id="2-bytes"),
        pytest.param(b"\x00\xa4\x04", id="3-bytes"),
        pytest.param(HEADER + b"\x03\xaa\xbb", id="Lc-longer-than-data"),
        pytest.param(HEADER + b"\x01\xaa\xbb\xcc", id="Lc-shorter-than-data"),
        pytest.param(HEADER + b"\x00\x01", id="truncated-extended-length"),
        pytest.param(HEADER + b"\x00\x00\x00\x00", id="extended-Lc-zero"),
        pytest.param(HEADER + b"\x00\x00\x05\xaa", id="extended-Lc-longer-than-data"),
        pytest.param(HEADER + b"\x00\x00\x01\xaa\xbb", id="extended-one-byte-Le"),
        pytest.param(HEADER + b"\x00\x00\x01\xaa\x00\x00\x00", id="extended-three-byte-Le"),
    ],
)
def test_malformed_lengths_are_6700(raw: bytes, selected: InProcessConnection) -> None:
    with pytest.raises(CardError) as excinfo:
        CommandApdu.parse(raw)
    assert excinfo.value.sw == 0x6700
    # Through the whole card: a status word, never an exception, and the card keeps working.
    assert selected.transmit(raw) == (b"", 0x6700)
    assert len(expect_ok(selected, piv.get_serial())) == 4


def test_command_chaining_bit_is_read_from_cla() -> None:
    assert CommandApdu.parse(b"\x10\xdb\x3f\xff\x01\xaa").chained
    assert not CommandApdu.parse(b"\x00\xdb\x3f\xff\x01\xaa").chained


# Every case through the real card ---------------------------------------------------------


def test_case1_through_the_card(selected: InProcessConnection) -> None:
    # VERIFY P1=FF: header only.
    assert selected.transmit(bytes.fromhex("0020FF80")) == (b"", SW_OK)


def test_case2s_through_the_card(selected: InProcessConnection, sim: SimulatedCard) -> None:
    data, sw = selected.transmit(bytes.fromhex("00F8000000"))
    assert (data, sw) == (sim.serial.to_bytes(4, "big"), SW_OK)


def test_case3s_through_the_card(selected: InProcessConnection) -> None:
    raw = bytes.fromhex("0020008008") + piv.pin_field(piv.DEFAULT_PIN)
    assert selected.transmit(raw) == (b"", SW_OK)
    assert selected.transmit(bytes.fromhex("00200080")) == (b"", SW_OK)  # now verified


def test_case4s_through_the_card(connection: InProcessConnection) -> None:
    raw = bytes.fromhex("00A404000B") + piv.PIV_AID + b"\x00"
    data, sw = connection.transmit(raw)
    assert sw == SW_OK
    assert data[0] == 0x61 and len(data) == data[1] + 2


def test_case2e_through_the_card(selected: InProcessConnection, sim: SimulatedCard) -> None:
    data, sw = selected.transmit(bytes.fromhex("00F80000000000"))
    assert (data, sw) == (sim.serial.to_bytes(4, "big"), SW_OK)


def test_case3e_and_case4e_through_the_card(selected: InProcessConnection) -> None:
    assert piv.authenticate_management(selected) == SW_OK
    cert = piv.make_certificate(600)
    put = piv.put_certificate(piv.SLOT_AUTHENTICATION, cert).encode(extended=True)
    assert put[4] == 0x00 and len(put) == 7 + int.from_bytes(put[5:7], "big")  # case 3E
    assert selected.transmit(put) == (b"", SW_OK)
    get = piv.get_data(0x5FC105).encode(extended=True)
    assert get[-2:] == b"\x00\x00"  # case 4E, Le = 65536
    data, sw = selected.transmit(get)
    assert sw == SW_OK
    assert piv.object_content(data) == piv.certificate_object(cert)


def test_short_le_smaller_than_the_answer_gets_61xx(selected: InProcessConnection) -> None:
    data, sw = selected.transmit(bytes.fromhex("00F8000002"))
    assert len(data) == 2 and sw == 0x6102
    rest, sw = selected.transmit(piv.get_response(2))
    assert sw == SW_OK and len(rest) == 2


# CLA and INS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cla", [0x80, 0xA0, 0xFF, 0x20, 0x40, 0x60, 0xE0])
def test_unsupported_class_is_6e00(cla: int, selected: InProcessConnection) -> None:
    assert selected.transmit(bytes([cla]) + bytes.fromhex("F8000000")) == (b"", 0x6E00)
    assert len(expect_ok(selected, piv.get_serial())) == 4


@pytest.mark.parametrize("cla", [0x04, 0x08, 0x0C, 0x14])
def test_secure_messaging_is_6882(cla: int, selected: InProcessConnection) -> None:
    assert selected.transmit(bytes([cla]) + bytes.fromhex("F8000000")) == (b"", 0x6882)


@pytest.mark.parametrize("cla", [0x01, 0x02, 0x03, 0x13])
def test_logical_channels_are_6881(cla: int, selected: InProcessConnection) -> None:
    assert selected.transmit(bytes([cla]) + bytes.fromhex("F8000000")) == (b"", 0x6881)


@pytest.mark.parametrize("ins", [0x00, 0x0E, 0x50, 0x84, 0xB0, 0xE2, 0xCA])
def test_unknown_instruction_is_6d00(ins: int, selected: InProcessConnection) -> None:
    assert selected.transmit(bytes([0x00, ins, 0x00, 0x00])) == (b"", 0x6D00)
    assert selected.transmit(bytes([0x00, ins, 0x00, 0x00, 0x02, 0x01, 0x02, 0x00])) == (
        b"", 0x6D00)


# Command chaining ---------------------------------------------------------------------------


def test_chained_put_data_writes_a_large_certificate(selected: InProcessConnection) -> None:
    assert piv.authenticate_management(selected) == SW_OK
    cert = piv.make_certificate(1200)
    frames = piv.put_certificate(piv.SLOT_SIGNATURE, cert).chained()
    assert len(frames) >= 5
    assert all(f[0] == 0x10 for f in frames[:-1]) and frames[-1][0] == 0x00
    for frame in frames[:-1]:
        # Intermediate links: accepted, nothing answered yet.
        assert selected.transmit(frame) == (b"", SW_OK)
    assert selected.transmit(frames[-1]) == (b"", SW_OK)
    data = expect_ok(selected, piv.get_data(0x5FC10A))
    assert piv.certificate_from_object(data).public_bytes(Encoding.DER) == cert


def test_chain_with_a_different_command_is_6883_then_recovers(
        selected: InProcessConnection) -> None:
    assert piv.authenticate_management(selected) == SW_OK
    cert = piv.make_certificate(700)
    frames = piv.put_certificate(piv.SLOT_AUTHENTICATION, cert).chained()
    assert selected.transmit(frames[0]) == (b"", SW_OK)
    # A different INS inside an open chain: the chain is abandoned.
    assert selected.transmit(piv.get_serial().encode()) == (b"", 0x6883)
    assert send(selected, piv.get_data(0x5FC105))[1] == 0x6A82  # nothing was written
    # The tail alone is not a valid object: the old chain did not survive.
    assert selected.transmit(frames[-1])[1] == 0x6A80
    # A fresh chain from the start works.
    assert send(selected, frames) == (b"", SW_OK)
    assert piv.object_content(expect_ok(selected, piv.get_data(0x5FC105))) == (
        piv.certificate_object(cert))


def test_chain_with_different_p1p2_is_6883(selected: InProcessConnection) -> None:
    assert selected.transmit(bytes.fromhex("10DB3FFF02AABB")) == (b"", SW_OK)
    assert selected.transmit(bytes.fromhex("00DB3FFE02AABB")) == (b"", 0x6883)
    assert len(expect_ok(selected, piv.get_serial())) == 4


def test_get_response_inside_a_chain_is_6883(selected: InProcessConnection) -> None:
    assert selected.transmit(bytes.fromhex("10DB3FFF02AABB")) == (b"", SW_OK)
    assert selected.transmit(piv.get_response()) == (b"", 0x6883)


def test_chain_longer_than_the_buffer_is_6700(selected: InProcessConnection) -> None:
    frame = bytes.fromhex("10DB3FFFFF") + bytes(255)
    sw = SW_OK
    sent = 0
    while sw == SW_OK and sent <= MAX_CHAINED_DATA + 255:
        _, sw = selected.transmit(frame)
        sent += 255
    assert sw == 0x6700
    assert sent > MAX_CHAINED_DATA
    assert len(expect_ok(selected, piv.get_serial())) == 4  # the buffer was released


def test_engine_joins_chained_data_for_the_applet() -> None:
    applet = RecordingApplet(b"ok")
    engine = ApduEngine(applet)
    assert engine.transmit(bytes.fromhex("10DB3FFF02AABB")) == b"\x90\x00"
    assert engine.transmit(bytes.fromhex("10DB3FFF01CC")) == b"\x90\x00"
    assert applet.commands == []  # nothing reaches the applet before the last link
    assert engine.transmit(bytes.fromhex("00DB3FFF01DD00")) == b"ok\x90\x00"
    (cmd,) = applet.commands
    assert cmd.data == bytes.fromhex("AABBCCDD")
    assert cmd.ne == 256 and not cmd.chained


# Response chaining ------------------------------------------------------------------------


def _write_certificate(connection: InProcessConnection, slot: int, size: int) -> bytes:
    assert piv.authenticate_management(connection) == SW_OK
    cert = piv.make_certificate(size)
    expect_ok(connection, piv.put_certificate(slot, cert))
    return piv.certificate_object(cert)


@pytest.mark.parametrize("size", [1100, 2900])
def test_response_chaining_with_short_le(size: int, selected: InProcessConnection) -> None:
    content = _write_certificate(selected, piv.SLOT_KEY_MANAGEMENT, size)
    expected = b"\x53\x82" + len(content).to_bytes(2, "big") + content
    data, sw = selected.transmit(piv.get_data(0x5FC10B).encode())
    collected = data
    chunks = [len(data)]
    while sw >> 8 == 0x61:
        remaining = len(expected) - len(collected)
        assert sw & 0xFF == (remaining if remaining < 256 else 0)  # 61XX says what is left
        data, sw = selected.transmit(piv.get_response(sw & 0xFF))
        collected += data
        chunks.append(len(data))
    assert sw == SW_OK
    assert collected == expected
    assert all(c == 256 for c in chunks[:-1]) and 0 < chunks[-1] <= 256
    assert len(chunks) == -(-len(expected) // 256)


def test_get_response_with_a_smaller_le(selected: InProcessConnection) -> None:
    content = _write_certificate(selected, piv.SLOT_KEY_MANAGEMENT, 1000)
    first, sw = selected.transmit(piv.get_data(0x5FC10B).encode())
    assert len(first) == 256 and sw == 0x6100
    part, sw = selected.transmit(piv.get_response(0x10))
    assert len(part) == 16 and sw == 0x6100
    rest, sw = send(selected, piv.get_response())
    assert sw == SW_OK
    assert (first + part + rest)[4:] == content


def test_extended_le_returns_everything_at_once(selected: InProcessConnection) -> None:
    content = _write_certificate(selected, piv.SLOT_KEY_MANAGEMENT, 2900)
    data, sw = selected.transmit(piv.get_data(0x5FC10B).encode(extended=True))
    assert sw == SW_OK
    assert piv.object_content(data) == content


def test_get_response_with_nothing_pending(selected: InProcessConnection) -> None:
    assert selected.transmit(piv.get_response()) == (b"", 0x6985)
    assert selected.transmit(piv.get_response(0x10)) == (b"", 0x6985)


def test_another_command_abandons_pending_response(selected: InProcessConnection) -> None:
    _write_certificate(selected, piv.SLOT_KEY_MANAGEMENT, 1000)
    _, sw = selected.transmit(piv.get_data(0x5FC10B).encode())
    assert sw >> 8 == 0x61
    expect_ok(selected, piv.get_serial())
    assert selected.transmit(piv.get_response()) == (b"", 0x6985)


def test_get_response_rejects_p1p2_and_data(selected: InProcessConnection) -> None:
    _write_certificate(selected, piv.SLOT_KEY_MANAGEMENT, 1000)
    _, sw = selected.transmit(piv.get_data(0x5FC10B).encode())
    assert sw >> 8 == 0x61
    assert selected.transmit(bytes.fromhex("00C0010000")) == (b"", 0x6A86)


def test_power_cycle_drops_pending_response(selected: InProcessConnection,
                                            sim: SimulatedCard) -> None:
    _write_certificate(selected, piv.SLOT_KEY_MANAGEMENT, 1000)
    _, sw = selected.transmit(piv.get_data(0x5FC10B).encode())
    assert sw >> 8 == 0x61
    sim.power_off()
    sim.power_on()
    assert selected.transmit(piv.get_response()) == (b"", 0x6985)


def test_apdu_to_unpowered_card_acts_as_cold_reset(selected: InProcessConnection,
                                                  sim: SimulatedCard) -> None:
    expect_ok(selected, piv.verify(piv.DEFAULT_PIN))
    sim.power_off()
    # No selection and no PIN status survive, whatever the transport did with power.
    assert selected.transmit(piv.get_serial().encode()) == (b"", 0x6D00)
    expect_ok(selected, piv.select())
    assert send(selected, piv.verify())[1] == 0x63C3


# The engine never raises ---------------------------------------------------------------------


def test_applet_crash_becomes_6f00_and_clears_chaining_state() -> None:
    applet = RecordingApplet(bytes(600))
    engine = ApduEngine(applet)
    data, sw = _split(engine.transmit(bytes.fromhex("00CA000000")))
    assert sw == 0x6100 and len(data) == 256
    applet.fail_with = RuntimeError("firmware bug")
    assert engine.transmit(bytes.fromhex("00CA0000")) == b"\x6f\x00"
    # The pending response was dropped together with the fault.
    applet.fail_with = None
    assert engine.transmit(bytes.fromhex("00C0000000")) == b"\x69\x85"


def test_applet_card_error_is_its_status_word() -> None:
    applet = RecordingApplet()
    applet.fail_with = CardError(0x6A88, "no key")
    assert ApduEngine(applet).transmit(bytes.fromhex("00870000")) == b"\x6a\x88"


def test_engine_reset_clears_chain_and_resets_applet() -> None:
    applet = RecordingApplet(b"")
    engine = ApduEngine(applet)
    assert engine.transmit(bytes.fromhex("10DB3FFF01AA")) == b"\x90\x00"
    engine.reset()
    assert applet.resets == 1
    # Without the reset this would be 6883 (different P2 inside a chain).
    assert engine.transmit(bytes.fromhex("00DB3FFE01BB")) == b"\x90\x00"
    assert applet.commands[-1].data == b"\xbb"


def test_case3_answer_without_le_still_returns_data() -> None:
    # PIV hosts often omit Le; the answer still comes, one short frame at a time.
    applet = RecordingApplet(bytes(range(256)) + b"\x01")
    engine = ApduEngine(applet)
    data, sw = _split(engine.transmit(bytes.fromhex("00CB3FFF01AA")))
    assert sw == 0x6101 and data == bytes(range(256))
    assert engine.transmit(bytes.fromhex("00C0000000")) == b"\x01\x90\x00"


def test_command_object_encodings_match_the_parser() -> None:
    # The host helper and the card agree on every case.
    for command, extended in [
        (Command(0xCB, 0x3F, 0xFF), False),
        (Command(0xCB, 0x3F, 0xFF, le=0), False),
        (Command(0xCB, 0x3F, 0xFF, b"\x01\x02"), False),
        (Command(0xCB, 0x3F, 0xFF, b"\x01\x02", le=5), False),
        (Command(0xCB, 0x3F, 0xFF, le=0), True),
        (Command(0xCB, 0x3F, 0xFF, bytes(400)), True),
        (Command(0xCB, 0x3F, 0xFF, bytes(400), le=0), True),
    ]:
        parsed = CommandApdu.parse(command.encode(extended=extended))
        assert parsed.data == command.data
        assert parsed.extended is extended
        if command.le is None:
            assert parsed.ne == 0
        else:
            assert parsed.ne == (command.le or (65536 if extended else 256))


# BER-TLV (ground.iso7816), which the engine and the applet share ---------------------------


@pytest.mark.parametrize("length", [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF])
@pytest.mark.parametrize("tag", [0x53, 0x7F49, 0x5FC105])
def test_tlv_round_trip(tag: int, length: int) -> None:
    value = bytes(i & 0xFF for i in range(length))
    encoded = tlv(tag, value)
    header = len(encoded) - length
    tag_len = (tag.bit_length() + 7) // 8
    assert header == tag_len + (1 if length < 0x80 else 2 if length <= 0xFF else 3)
    assert parse_tlv(encoded) == [Tlv(tag, value)]


def test_tlv_sequence_and_dict() -> None:
    data = tlv(0x80, b"\x11") + tlv(0x5F2F, b"\x40\x00") + tlv(0x71)
    assert parse_tlv_dict(data) == {0x80: b"\x11", 0x5F2F: b"\x40\x00", 0x71: b""}
    assert parse_single(tlv(0x7C, data), 0x7C) == data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x5f", id="truncated-multibyte-tag"),
        pytest.param(b"\x1f\xff\xff\xff\xff\x00", id="tag-longer-than-4-bytes"),
        pytest.param(b"\x53", id="missing-length"),
        pytest.param(b"\x53\x80", id="indefinite-length"),
        pytest.param(b"\x53\x83\x00\x00\x01\x00", id="three-byte-length"),
        pytest.param(b"\x53\x82\x01", id="truncated-length"),
        pytest.param(b"\x53\x05\x00", id="value-past-end"),
    ],
)
def test_malformed_tlv(data: bytes) -> None:
    with pytest.raises(TlvError):
        parse_tlv(data)


def test_tlv_structure_errors() -> None:
    with pytest.raises(TlvError):
        parse_tlv_dict(tlv(0x80, b"\x01") + tlv(0x80, b"\x02"))
    with pytest.raises(TlvError):
        parse_single(tlv(0x53) + tlv(0x53), 0x53)
    with pytest.raises(TlvError):
        parse_single(tlv(0x54), 0x53)
    with pytest.raises(ValueError):
        tlv(0x53, bytes(0x10000))


def test_retries_status_word() -> None:
    assert [retries_sw(n) for n in (0, 1, 3, 15, 16)] == [0x63C0, 0x63C1, 0x63C3, 0x63CF, 0x63CF]


# Garbage in, a status word out ----------------------------------------------------------------

_PIV_INS = [0xA4, 0xCB, 0xDB, 0x20, 0x24, 0x2C, 0x47, 0x87, 0xC0,
            0xF7, 0xF8, 0xF9, 0xFA, 0xFD, 0xFF]


def _random_apdu(rng: random.Random) -> bytes:
    """Mostly well-framed commands with plausible INS/P1/P2 and TLV-shaped data."""
    ins = rng.choice(_PIV_INS) if rng.random() < 0.9 else rng.randrange(256)
    p1 = rng.choice([0x00, 0x3F, 0x04, 0xFF, 0x03, 0x11, 0x07, rng.randrange(256)])
    p2 = rng.choice([0x00, 0xFF, 0x80, 0x81, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, rng.randrange(256)])
    inner = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    tag = rng.choice([0x5C, 0x53, 0x7C, 0xAC, 0x80, 0x81, 0x82, 0x85, rng.randrange(256)])
    data = rng.choice([b"", inner, tlv(tag, inner), tlv(0x7C, tlv(0x82) + tlv(tag, inner)),
                       tlv(0x5C, inner[:3]) + tlv(0x53, inner)])
    le = rng.choice([None, 0, rng.randrange(256)])
    cla = rng.choice([0x00, 0x00, 0x00, 0x10, rng.randrange(256)])
    raw = Command(ins, p1, p2, data, le, cla).encode(extended=rng.random() < 0.2)
    if rng.random() < 0.1:  # break the framing
        raw = raw[: rng.randrange(len(raw) + 1)] + bytes(rng.randrange(3))
    return raw


def test_random_apdus_always_get_a_status_word(selected: InProcessConnection,
                                               caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(0x7816)  # fixed seed: the same 3000 commands every run
    assert piv.authenticate_management(selected) == SW_OK
    caplog.set_level(logging.ERROR, logger="firmware_sim")
    for i in range(3000):
        raw = _random_apdu(rng)
        data, sw = selected.transmit(raw)
        assert 0x6000 <= sw <= 0x9FFF, f"#{i} {raw.hex()}: SW {sw:04X}"
        # 6F00 is the engine's catch-all: reaching it means a handler crashed.
        assert sw != 0x6F00, f"#{i} {raw.hex()}: internal fault"
        assert sw >> 8 in (0x61, 0x90) or data == b"", f"#{i} data with error SW {sw:04X}"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
