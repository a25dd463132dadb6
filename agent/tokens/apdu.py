"""The protocol layer: command APDUs out, response APDUs in, status words mapped.

Below it, any `Connection` (pyscard, the in-process simulator, a replay);
above it, `PivSession`. Handles command chaining (CLA 0x10) for long data and
response chaining (61XX, GET RESPONSE), logs APDUs at TRAFFIC level with
secrets masked, and maps status words to domain errors in one place.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from agent.tokens.errors import (
    InvalidInput,
    InvalidPin,
    InvalidPuk,
    KeyNotFound,
    NotAuthenticated,
    OperationFailed,
    PinBlocked,
    PinFormatInvalid,
    PukBlocked,
    TokenError,
    TokenResponseError,
    UnsupportedMechanism,
)
from agent.tokens.secret import wipe
from ground.iso7816 import INS_GET_RESPONSE, SW, more_data, retries_left
from ground.traffic import TRAFFIC

log = logging.getLogger(__name__)

SHORT_MAX = 255
MAX_RESPONSE = 65536  # refuse a card that keeps answering 61XX forever


class Connection(Protocol):
    """Transport: one APDU in, (response data, SW) out. A bytearray APDU carries a
    secret and is wiped once sent: the transport keeps no copy of it."""

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]: ...


def transaction(connection: Connection) -> AbstractContextManager[object]:
    """The transport's exclusive transaction if it has one (PC/SC), else nothing."""
    begin = getattr(connection, "transaction", None)
    if callable(begin):
        context: AbstractContextManager[object] = begin()
        return context
    return nullcontext()


@dataclass(frozen=True, slots=True)
class Command:
    """A command APDU. `le=0` asks for everything; None leaves Le out.
    `secret` masks the data field in traces (PINs, PUKs, keys) and wipes its frames
    once sent; the caller wipes `data` itself."""

    ins: int
    p1: int = 0
    p2: int = 0
    data: bytes | bytearray = b""
    le: int | None = 0
    cla: int = 0x00
    secret: bool = False

    def frames(self) -> list[bytearray]:
        """Short APDUs, chained with CLA 0x10 when the data exceeds 255 bytes."""
        view = memoryview(self.data)  # slices of a view copy nothing that outlives a wipe
        chunks = [view[i:i + SHORT_MAX] for i in range(0, len(view), SHORT_MAX)]
        chunks = chunks or [view[:0]]
        out = []
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            cla = self.cla if last else self.cla | 0x10
            frame = bytearray([cla, self.ins, self.p1, self.p2])
            if chunk:
                frame.append(len(chunk))
                frame += chunk
            if last and self.le is not None:
                frame.append(self.le & 0xFF)
            out.append(frame)
        return out


class Reference(Enum):
    """What a verification status word refers to."""

    PIN = "pin"
    PUK = "puk"
    KEY = "key"
    OBJECT = "object"


def error_for_sw(sw: int, reference: Reference | None = None, what: str = "") -> TokenError:
    """The one mapping from status words (ISO 7816-4 §5.6, SP 800-73-4 Part 2 Table 6)
    to domain errors."""
    left = retries_left(sw)
    if left is not None:
        return InvalidPuk(left) if reference is Reference.PUK else InvalidPin(left)
    if sw == SW.AUTH_METHOD_BLOCKED:
        return PukBlocked() if reference is Reference.PUK else PinBlocked()
    if sw == SW.SECURITY_STATUS_NOT_SATISFIED:
        return NotAuthenticated(f"{what}: security status not satisfied")
    if sw == SW.INCORRECT_DATA and reference in (Reference.PIN, Reference.PUK):
        return PinFormatInvalid(f"{what}: the token refused the PIN format")
    if sw in (SW.INCORRECT_DATA, SW.WRONG_LENGTH):
        return InvalidInput(f"{what}: the token refused the data ({sw:04X})")
    if sw in (SW.FILE_NOT_FOUND, SW.REFERENCE_DATA_NOT_FOUND) and reference is Reference.KEY:
        return KeyNotFound(what)
    if sw in (SW.INS_NOT_SUPPORTED, SW.CLA_NOT_SUPPORTED, SW.FUNCTION_NOT_SUPPORTED):
        return UnsupportedMechanism(f"{what}: not supported by the token ({sw:04X})")
    return OperationFailed(f"{what}: the token answered {sw:04X}", sw)


def _mask(frame: bytes | bytearray, secret: bool) -> str:
    if secret and len(frame) > 5:
        return frame[:5].hex() + "**" * (len(frame) - 5)
    return frame.hex()


class ApduChannel:
    """Sends `Command`s over a `Connection` with ISO 7816-4 chaining both ways."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def exchange(self, command: Command) -> tuple[bytes, int]:
        """Send; answer (all response data, final SW). Chained frames stop at a non-9000."""
        frames = command.frames()
        try:
            for frame in frames[:-1]:
                data, sw = self._transmit(frame, command.secret)
                if sw != SW.OK:
                    return data, sw
            data, sw = self._transmit(frames[-1], command.secret)
        finally:
            if command.secret:
                wipe(*frames)
        response = bytearray(data)
        while more_data(sw):
            if len(response) > MAX_RESPONSE:
                raise TokenResponseError("response chaining does not end")
            data, sw = self._transmit(bytes([0x00, INS_GET_RESPONSE, 0x00, 0x00, sw & 0xFF]),
                                      False)
            response += data
        return bytes(response), sw

    def send(self, command: Command, reference: Reference | None = None, what: str = "") -> bytes:
        """Send and answer the data; any SW but 9000 raises the mapped domain error."""
        data, sw = self.exchange(command)
        if sw != SW.OK:
            raise error_for_sw(sw, reference, what or f"INS {command.ins:02X}")
        return data

    def _transmit(self, frame: bytes | bytearray, secret: bool) -> tuple[bytes, int]:
        if log.isEnabledFor(TRAFFIC):
            log.log(TRAFFIC, "> %s", _mask(frame, secret))
        data, sw = self.connection.transmit(frame)
        if log.isEnabledFor(TRAFFIC):
            log.log(TRAFFIC, "< %s %04X", data.hex(), sw)
        return data, sw
