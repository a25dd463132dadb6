"""PIV vocabulary (NIST SP 800-73-4, SP 800-78-4) shared by the card (firmware_sim)
and the host (agent.tokens): identifiers from the standards and the vendor
extensions field tokens carry. Constants only; each side keeps its own logic.
"""

from __future__ import annotations

from enum import IntEnum

PIV_AID = bytes.fromhex("A000000308000010000100")
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
PIN_LENGTH = 8  # PIN and PUK fields are 8 bytes, padded with 0xFF (Part 2 §2.4.3)


class INS(IntEnum):
    """Instructions: SP 800-73-4 Part 2 Table 8, then the common vendor extensions."""

    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    GENERATE_ASYMMETRIC_KEY_PAIR = 0x47
    GENERAL_AUTHENTICATE = 0x87
    SELECT = 0xA4
    GET_DATA = 0xCB
    PUT_DATA = 0xDB
    GET_METADATA = 0xF7
    GET_SERIAL = 0xF8
    ATTEST = 0xF9
    SET_PIN_RETRIES = 0xFA
    RESET = 0xFB
    GET_VERSION = 0xFD
    SET_MANAGEMENT_KEY = 0xFF


class Algorithm(IntEnum):
    """Cryptographic algorithm identifiers (SP 800-78-4 Table 5)."""

    TDES = 0x03
    RSA_2048 = 0x07
    AES_128 = 0x08
    AES_192 = 0x0A
    AES_256 = 0x0C
    ECC_P256 = 0x11
    ECC_P384 = 0x14


class KeyRef(IntEnum):
    """Key references (SP 800-73-4 Part 1 Table 4; F9 is the vendor attestation key)."""

    PIN = 0x80
    PUK = 0x81
    MANAGEMENT = 0x9B
    AUTHENTICATION = 0x9A
    SIGNATURE = 0x9C
    KEY_MANAGEMENT = 0x9D
    CARD_AUTHENTICATION = 0x9E
    ATTESTATION = 0xF9


class Slot(IntEnum):
    """The four PIV key slots a signer's keys live in (SP 800-73-4 Part 1 §3.1, Table 4)."""

    AUTHENTICATION = KeyRef.AUTHENTICATION
    SIGNATURE = KeyRef.SIGNATURE
    KEY_MANAGEMENT = KeyRef.KEY_MANAGEMENT
    CARD_AUTHENTICATION = KeyRef.CARD_AUTHENTICATION


class PinPolicy(IntEnum):
    DEFAULT = 0
    NEVER = 1
    ONCE = 2
    ALWAYS = 3


# SP 800-73-4 Part 1 §3.1: 9C is "PIN always"; 9E may be used without PIN.
_DEFAULT_PIN_POLICY: dict[int, PinPolicy] = {
    Slot.SIGNATURE: PinPolicy.ALWAYS,
    Slot.CARD_AUTHENTICATION: PinPolicy.NEVER,
}


def default_pin_policy(slot: int) -> PinPolicy:
    """What a key's PinPolicy.DEFAULT means in `slot` (SP 800-73-4 Part 1 §3.1)."""
    return _DEFAULT_PIN_POLICY.get(slot, PinPolicy.ONCE)


class TouchPolicy(IntEnum):
    DEFAULT = 0
    NEVER = 1
    ALWAYS = 2
    CACHED = 3


class KeyOrigin(IntEnum):
    GENERATED = 1
    IMPORTED = 2


# Slot -> its certificate's data object tag (SP 800-73-4 Part 1 Table 3).
SLOT_OBJECTS: dict[int, int] = {
    KeyRef.AUTHENTICATION: 0x5FC105,
    KeyRef.SIGNATURE: 0x5FC10A,
    KeyRef.KEY_MANAGEMENT: 0x5FC10B,
    KeyRef.CARD_AUTHENTICATION: 0x5FC101,
    **{0x82 + i: 0x5FC10D + i for i in range(20)},  # retired key management slots
}
CHUID_OBJECT = 0x5FC102
CCC_OBJECT = 0x5FC107
KEY_HISTORY_OBJECT = 0x5FC10C
DISCOVERY_OBJECT = 0x7E
ATTESTATION_OBJECT = 0x5FFF01  # vendor: the device attestation certificate (slot F9)
