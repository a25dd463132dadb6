"""The APDU engine: ISO/IEC 7816-3/-4 framing around the applet.

Parses short and extended command APDUs, joins command chains (CLA bit 0x10),
splits long responses into 61XX + GET RESPONSE chunks, and turns every error
into a status word: whatever bytes arrive, the card answers, it never raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from ground.iso7816 import INS_GET_RESPONSE, SW

log = logging.getLogger(__name__)

# The card refuses a chained command longer than this (it is a card's RAM buffer).
MAX_CHAINED_DATA = 8192


class CardError(Exception):
    """A command failed; the card answers `sw`."""

    def __init__(self, sw: int, reason: str = "") -> None:
        super().__init__(f"{sw:04X} {reason}".strip())
        self.sw = sw
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """A parsed command APDU (ISO 7816-3 §12.1.3 cases 1, 2S/E, 3S/E, 4S/E)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    ne: int  # expected response length; 0 when Le is absent
    extended: bool

    @property
    def chained(self) -> bool:
        return bool(self.cla & 0x10)

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Decode the case from the body length; raise CardError(6700) on bad framing."""
        if len(raw) < 4:
            raise CardError(SW.WRONG_LENGTH, "header shorter than 4 bytes")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        n = len(body)
        if n == 0:  # case 1
            return cls(cla, ins, p1, p2, b"", 0, False)
        if n == 1:  # case 2S
            return cls(cla, ins, p1, p2, b"", body[0] or 256, False)
        if body[0] != 0:  # short Lc
            lc = body[0]
            if n == 1 + lc:  # case 3S
                return cls(cla, ins, p1, p2, bytes(body[1:]), 0, False)
            if n == 2 + lc:  # case 4S
                return cls(cla, ins, p1, p2, bytes(body[1:-1]), body[-1] or 256, False)
            raise CardError(SW.WRONG_LENGTH, "Lc does not match the body")
        # body[0] == 0 and n >= 2: extended length
        if n == 3:  # case 2E
            le = int.from_bytes(body[1:3], "big")
            return cls(cla, ins, p1, p2, b"", le or 65536, True)
        if n < 3:
            raise CardError(SW.WRONG_LENGTH, "truncated extended length")
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise CardError(SW.WRONG_LENGTH, "extended Lc of zero")
        if n == 3 + lc:  # case 3E
            return cls(cla, ins, p1, p2, bytes(body[3:]), 0, True)
        if n == 5 + lc:  # case 4E
            le = int.from_bytes(body[-2:], "big")
            return cls(cla, ins, p1, p2, bytes(body[3:-2]), le or 65536, True)
        raise CardError(SW.WRONG_LENGTH, "extended Lc does not match the body")


class Applet(Protocol):
    """What the engine dispatches a complete (unchained) command to."""

    def process(self, command: CommandApdu) -> bytes:
        """Return the response data (SW 9000) or raise CardError."""

    def reset(self) -> None:
        """Power cycle or warm reset: forget all volatile state."""


def _sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class ApduEngine:
    """ISO 7816-4 framing in front of one applet; keeps the chaining buffers."""

    def __init__(self, applet: Applet) -> None:
        self._applet = applet
        self._chain: tuple[int, int, int] | None = None  # (INS, P1, P2) of an open chain
        self._chain_data = bytearray()
        self._pending = b""  # response bytes waiting for GET RESPONSE

    def reset(self) -> None:
        self._chain = None
        self._chain_data.clear()
        self._pending = b""
        self._applet.reset()

    def transmit(self, raw: bytes) -> bytes:
        """One command APDU in, one response APDU (data + SW1SW2) out. Never raises."""
        try:
            return self._transmit(raw)
        except CardError as exc:
            if exc.reason:
                log.debug("APDU refused with %04X: %s", exc.sw, exc.reason)
            return _sw_bytes(exc.sw)
        except Exception:  # firmware must answer; the bug goes to the log
            log.exception("unexpected fault while processing an APDU")
            self._chain = None
            self._chain_data.clear()
            self._pending = b""
            return _sw_bytes(SW.NO_PRECISE_DIAGNOSIS)

    def _transmit(self, raw: bytes) -> bytes:
        cmd = CommandApdu.parse(raw)
        if cmd.cla == 0xFF or cmd.cla & 0xE0:
            raise CardError(SW.CLA_NOT_SUPPORTED, f"CLA {cmd.cla:02X}")
        if cmd.cla & 0x0C:
            raise CardError(SW.SECURE_MESSAGING_NOT_SUPPORTED)
        if cmd.cla & 0x03:
            raise CardError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)

        if cmd.ins == INS_GET_RESPONSE and self._chain is None:
            return self._get_response(cmd)
        # Any other command abandons unread response bytes (ISO 7816-4 §5.3.4).
        self._pending = b""

        header = (cmd.ins, cmd.p1, cmd.p2)
        if self._chain is not None and header != self._chain:
            self._chain = None
            self._chain_data.clear()
            raise CardError(SW.LAST_COMMAND_OF_CHAIN_EXPECTED)
        if cmd.chained:
            if len(self._chain_data) + len(cmd.data) > MAX_CHAINED_DATA:
                self._chain = None
                self._chain_data.clear()
                raise CardError(SW.WRONG_LENGTH, "chained command too long")
            self._chain = header
            self._chain_data += cmd.data
            return _sw_bytes(SW.OK)
        if self._chain is not None:
            data = bytes(self._chain_data) + cmd.data
            self._chain = None
            self._chain_data.clear()
            if len(data) > MAX_CHAINED_DATA:
                raise CardError(SW.WRONG_LENGTH, "chained command too long")
            cmd = CommandApdu(cmd.cla, cmd.ins, cmd.p1, cmd.p2, data, cmd.ne, cmd.extended)

        response = self._applet.process(cmd)
        return self._send(response, cmd.ne, cmd.extended)

    def _send(self, response: bytes, ne: int, extended: bool) -> bytes:
        # Le absent: PIV hosts still expect the data, up to one short frame at a time.
        limit = ne or (65536 if extended else 256)
        chunk, rest = response[:limit], response[limit:]
        self._pending = rest
        if rest:
            return chunk + _sw_bytes(SW.MORE_DATA | min(len(rest), 256) & 0xFF)
        return chunk + _sw_bytes(SW.OK)

    def _get_response(self, cmd: CommandApdu) -> bytes:
        if cmd.p1 or cmd.p2:
            raise CardError(SW.INCORRECT_P1P2)
        if cmd.data:
            raise CardError(SW.WRONG_LENGTH)
        if not self._pending:
            raise CardError(SW.CONDITIONS_NOT_SATISFIED, "no response data pending")
        pending, self._pending = self._pending, b""
        return self._send(pending, cmd.ne, cmd.extended)
