"""PivToken over the in-process card: PIN discipline the host must keep."""

from __future__ import annotations

import pytest

from agent.tokens.errors import InvalidPin, PinBlocked
from agent.tokens.piv import PivToken
from firmware_sim.card import InProcessConnection


class CountingConnection:
    """Counts command APDUs that carry a PIN or PUK (VERIFY / CHANGE / RESET RETRY with data)."""

    def __init__(self, inner: InProcessConnection) -> None:
        self.inner = inner
        self.secrets_sent = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if apdu[1] in (0x20, 0x24, 0x2C) and len(apdu) > 5:
            self.secrets_sent += 1
        return self.inner.transmit(apdu)


def test_no_pin_goes_to_a_card_that_said_blocked(connection: InProcessConnection) -> None:
    counting = CountingConnection(connection)
    token = PivToken(counting)
    for left in (2, 1, 0):
        with pytest.raises(InvalidPin) as wrong:
            token.verify_pin("999999")
        assert wrong.value.attempts_left == left
    sent = counting.secrets_sent
    for _ in range(3):
        with pytest.raises(PinBlocked):
            token.verify_pin("123456")
        with pytest.raises(PinBlocked):
            token.change_pin("123456", "654321")
    assert counting.secrets_sent == sent, "a PIN was sent to a blocked card"
    assert token.pin_status().blocked

    token.unblock_pin("12345678", "246810")
    token.verify_pin("246810")
    assert token.pin_status().retries_left == 3


def test_a_card_unblocked_elsewhere_is_noticed_by_the_status(
        connection: InProcessConnection) -> None:
    token = PivToken(connection)
    for _ in range(3):
        with pytest.raises((InvalidPin, PinBlocked)):
            token.verify_pin("999999")
    other = PivToken(connection)  # another application on the same card
    other.unblock_pin("12345678", "123456")
    assert not token.pin_status().blocked
    token.verify_pin("123456")


class KeepingConnection:
    """Keeps every APDU object it is given, as a transport that held on to it would."""

    def __init__(self, inner: InProcessConnection) -> None:
        self.inner = inner
        self.sent: list[tuple[int, bytes | bytearray]] = []  # (INS as sent, the object)

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        self.sent.append((apdu[1], apdu))
        return self.inner.transmit(apdu)


def test_pin_and_puk_apdus_are_wiped_once_sent(connection: InProcessConnection) -> None:
    """VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER reach the card intact (it
    accepts them), and the buffers that carried the PIN or PUK are zero afterwards."""
    keeping = KeepingConnection(connection)
    token = PivToken(keeping)
    token.verify_pin("123456")
    token.change_pin("123456", "246810")
    token.unblock_pin("12345678", "135790")
    token.verify_pin("135790")
    carried = [apdu for ins, apdu in keeping.sent if ins in (0x20, 0x24, 0x2C) and len(apdu) > 5]
    assert len(carried) == 4
    for apdu in carried:
        assert apdu == bytes(len(apdu)), f"a PIN APDU was left as {bytes(apdu).hex()}"
