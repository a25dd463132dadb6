"""HOTP (RFC 4226) for OATH hardware tokens: a key fob shows the next code of a counter
each time its button is pressed, so the agent keeps the counter it expects next and
accepts a code found at most LOOK_AHEAD presses ahead (RFC 4226 §7.4, the look-ahead
window s). An accepted code moves the counter past it: that code and every earlier one
are spent (SECURITY #20). The secret comes from the token's seed file and is provisioned
by the person at their machine (`qsign agent otp hotp`), never through a page.

Storage and throttling are agent.identity.otp's: one failure count per account whatever
its OTP kind, and an account holds one kind at a time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

import pyotp

LOOK_AHEAD = 10  # presses of the button a signer may make without signing in between
MIN_SECRET_BYTES = 16  # RFC 4226 §4 R6: at least 128 bits (160 recommended)

SCHEMA = ("CREATE TABLE IF NOT EXISTS otp_hotp ("
          " account TEXT PRIMARY KEY, secret TEXT NOT NULL, digits INTEGER NOT NULL,"
          " counter INTEGER NOT NULL, enrolled_at REAL NOT NULL)")


class HotpSecretInvalid(ValueError):
    """The provisioned secret is not base32 or hex of at least 128 bits."""


@dataclass(frozen=True, slots=True)
class HotpEnrolment:
    """A stored HOTP secret and the counter of the next code expected."""

    account: str
    secret: str  # base32
    digits: int
    counter: int
    enrolled_at: float


def normalised_secret(text: str) -> str:
    """The secret as base32, from base32 (authenticator style) or hex (the usual seed
    file format of OATH tokens, e.g. PSKC's plain values)."""
    compact = "".join(text.split())
    raw: bytes | None = None
    if compact and all(c in "0123456789abcdefABCDEF" for c in compact) \
            and len(compact) % 2 == 0:
        raw = bytes.fromhex(compact)
    else:
        try:
            padded = compact.upper() + "=" * (-len(compact) % 8)
            raw = base64.b32decode(padded)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) < MIN_SECRET_BYTES:
        raise HotpSecretInvalid("an HOTP secret is base32 or hex of at least 128 bits")
    return base64.b32encode(raw).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class HotpMatch:
    counter: int | None  # the counter whose code matched, inside the look-ahead window
    spent: bool  # the code is one already passed (a replay, not a guess)


def match(enrolment: HotpEnrolment, code: str) -> HotpMatch:
    """Where `code` lies: ahead inside the window (accept), behind (spent), or nowhere.
    Every candidate is compared in constant time, whatever matched before (SECURITY #23).
    """
    typed = code.replace(" ", "").encode("utf-8")
    hotp = pyotp.HOTP(enrolment.secret, digits=enrolment.digits)
    ahead: int | None = None
    spent = False
    for counter in range(max(0, enrolment.counter - LOOK_AHEAD),
                         enrolment.counter + LOOK_AHEAD + 1):
        same = hmac.compare_digest(hotp.at(counter).encode("ascii"), typed)
        if same and counter >= enrolment.counter and ahead is None:
            ahead = counter
        elif same and counter < enrolment.counter:
            spent = True
    return HotpMatch(ahead, spent and ahead is None)
