"""ISO/IEC 7816-4 vocabulary shared by the card (firmware_sim) and the host (agent).

Status words and BER-TLV: both sides speak them, neither may import the other,
so they live here once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum


class SW(IntEnum):
    """Status words (ISO/IEC 7816-4 §5.6, SP 800-73-4 Table 6)."""

    OK = 0x9000
    MORE_DATA = 0x6100  # low byte: bytes still available
    VERIFICATION_FAILED = 0x63C0  # low nibble: tries left
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCE_DATA_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


# GET RESPONSE fetches what a 61XX status word announced (ISO 7816-4 §11.4).
INS_GET_RESPONSE = 0xC0


def retries_sw(left: int) -> int:
    """Verification failed, `left` tries remain (ISO 7816-4: 63CX)."""
    return SW.VERIFICATION_FAILED | min(left, 0x0F)


def retries_left(sw: int) -> int | None:
    """The tries a 63CX status word says remain (ISO 7816-4 §5.6); None for any other."""
    return sw & 0x0F if sw & 0xFFF0 == SW.VERIFICATION_FAILED else None


def more_data(sw: int) -> bool:
    """61XX: response bytes wait for GET RESPONSE (ISO 7816-4 §5.6)."""
    return sw & 0xFF00 == SW.MORE_DATA


class TlvError(ValueError):
    """The bytes are not well-formed BER-TLV."""


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes


# Longest length field we accept: 0x82 (two bytes), enough for 65535.
_MAX_LENGTH_BYTES = 2


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("truncated tag")
    first = data[pos]
    tag = first
    pos += 1
    if first & 0x1F == 0x1F:  # multi-byte tag (ISO 7816-4 §5.2.2.1)
        for _ in range(3):
            if pos >= len(data):
                raise TlvError("truncated multi-byte tag")
            b = data[pos]
            tag = (tag << 8) | b
            pos += 1
            if not b & 0x80:
                break
        else:
            raise TlvError("tag longer than 4 bytes")
    return tag, pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("truncated length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > _MAX_LENGTH_BYTES:
        raise TlvError(f"unsupported length form 0x{first:02X}")
    if pos + count > len(data):
        raise TlvError("truncated length")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def iter_tlv(data: bytes) -> Iterator[Tlv]:
    """Yield the BER-TLV objects of `data` in order (ISO 7816-4 §5.2)."""
    pos = 0
    while pos < len(data):
        tag, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos)
        end = pos + length
        if end > len(data):
            raise TlvError(f"value of tag 0x{tag:X} runs past the end")
        yield Tlv(tag, data[pos:end])
        pos = end


def parse_tlv(data: bytes) -> list[Tlv]:
    return list(iter_tlv(data))


def parse_tlv_dict(data: bytes) -> dict[int, bytes]:
    """Parse a flat TLV list; a repeated tag is malformed here."""
    result: dict[int, bytes] = {}
    for tlv in iter_tlv(data):
        if tlv.tag in result:
            raise TlvError(f"tag 0x{tlv.tag:X} repeated")
        result[tlv.tag] = tlv.value
    return result


def parse_single(data: bytes, tag: int) -> bytes:
    """The value of `data` when it is exactly one TLV with `tag`."""
    items = parse_tlv(data)
    if len(items) != 1 or items[0].tag != tag:
        raise TlvError(f"expected a single 0x{tag:X} object")
    return items[0].value


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return bytes([0x82]) + length.to_bytes(2, "big")
    raise ValueError("TLV value too long")


def encode_tag(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def tlv(tag: int, value: bytes = b"") -> bytes:
    """Encode one BER-TLV object."""
    return encode_tag(tag) + encode_length(len(value)) + value
