"""The requester's credentials: passwords hashed with Argon2id (RFC 9106) through
argon2-cffi, and TOTP second factors (RFC 6238) with replay refusal."""

from __future__ import annotations

import datetime as dt
import hmac
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2-cffi's defaults are RFC 9106 §4's second recommended option (t=3, m=64 MiB, p=4).
_HASHER = PasswordHasher()
MIN_PASSWORD = 10  # NIST SP 800-63B §3.1.1.2: at least 8; no composition rules
MAX_PASSWORD = 256
TOTP_STEP = 30  # RFC 6238 §5.2
ISSUER = "qsign portal"


def hash_password(password: str) -> str:
    """An Argon2id PHC string (salt and parameters included)."""
    return _HASHER.hash(password)


@cache
def _decoy() -> str:
    return _HASHER.hash("a password nobody has")


def password_matches(stored: str | None, password: str) -> bool:
    """Whether `password` is the one `stored` hashes; an account without a password costs
    the same time as a wrong one (no address enumeration by timing)."""
    try:
        return _HASHER.verify(stored or _decoy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    """160 random bits in base32 (RFC 4226 §4 R6 recommends 160)."""
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app scans (Key Uri Format)."""
    return pyotp.TOTP(secret, interval=TOTP_STEP).provisioning_uri(name=email,
                                                                    issuer_name=ISSUER)


def totp_step(now: dt.datetime) -> int:
    return int(now.timestamp()) // TOTP_STEP


def matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code `code` is, within one step of `now` (RFC 6238 §5.2);
    None if none is."""
    totp = pyotp.TOTP(secret, interval=TOTP_STEP)
    current = totp_step(now)
    found = None
    for step in (current - 1, current, current + 1):  # every step compared: no early exit
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            found = step
    return found
