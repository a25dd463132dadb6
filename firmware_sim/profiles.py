"""Card profiles: the settings a card issuer fixes at personalisation."""

from __future__ import annotations

from dataclasses import dataclass


def _atr(historical: bytes) -> bytes:
    """T=1 ATR (ISO 7816-3 §8.2): TS, T0, TD1, TD2, historical bytes, TCK."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


# Historical bytes (ISO 7816-4 §8.1.1): category 0x80 (COMPACT-TLV), card
# issuer's data "qsign-sim" (tag 5), card capabilities (tag 7): command
# chaining and extended Lc/Le supported.
QSIGN_SIM_ATR = _atr(b"\x80" + b"\x59" + b"qsign-sim" + b"\x73\x00\x00\xc0")


@dataclass(frozen=True, slots=True)
class CardProfile:
    name: str
    pin_min_length: int
    pin_max_length: int
    pin_retries: int
    puk_retries: int
    default_pin: str
    default_puk: str
    atr: bytes = QSIGN_SIM_ATR
    firmware_version: tuple[int, int, int] = (1, 0, 0)


PROFILES: dict[str, CardProfile] = {
    # The signature service's rule: PINs of 4 to 8 digits.
    "default": CardProfile("default", 4, 8, 3, 3, "123456", "12345678"),
    # SP 800-73-4 §2.4.3: PIV PINs are 6 to 8 digits.
    "piv-strict": CardProfile("piv-strict", 6, 8, 3, 3, "123456", "12345678"),
}


def get_profile(name: str) -> CardProfile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown card profile {name!r} (known: {known})") from None
