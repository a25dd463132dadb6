"""HOTP for OATH hardware tokens (RFC 4226; SECURITY #20): a bounded look-ahead, the
counter moved past each accepted code, spent and far-ahead codes refused, failures
counted with TOTP's, and one OTP kind per account. Real SQLite files; the RFC's own
test secret and values (RFC 4226 Appendix D)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from agent.identity.hotp import LOOK_AHEAD, HotpSecretInvalid
from agent.identity.otp import (
    OtpInvalid,
    OtpLocked,
    OtpNotEnrolled,
    OtpReplayed,
    OtpStore,
    ThrottlePolicy,
    TotpVerifier,
)

ACCOUNT = "token-1/9C"
RFC_SECRET_HEX = "3132333435363738393031323334353637383930"  # "12345678901234567890"
# RFC 4226 Appendix D: HOTP values for counts 0..9 of that secret.
RFC_CODES = ["755224", "287082", "359152", "969429", "338314",
             "254676", "287922", "162583", "399871", "520489"]
T = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OtpStore]:
    with OtpStore(tmp_path / "otp.sqlite") as s:
        yield s


@pytest.fixture
def verifier(store: OtpStore) -> TotpVerifier:
    v = TotpVerifier(store, throttle=ThrottlePolicy(max_failures=5))
    v.provision_hotp(ACCOUNT, RFC_SECRET_HEX, now=T)
    return v


def _rfc_base32() -> str:
    return base64.b32encode(bytes.fromhex(RFC_SECRET_HEX)).decode()


def _code(counter: int) -> str:
    return pyotp.HOTP(_rfc_base32()).at(counter)


def test_the_rfc_values() -> None:
    assert [_code(c) for c in range(10)] == RFC_CODES


def test_codes_in_order_are_each_accepted_once(verifier: TotpVerifier) -> None:
    verifier.verify(ACCOUNT, RFC_CODES[0], now=T)
    with pytest.raises(OtpReplayed):
        verifier.verify(ACCOUNT, RFC_CODES[0], now=T)
    verifier.verify(ACCOUNT, RFC_CODES[1], now=T)


def test_look_ahead_accepts_skipped_presses_and_spends_what_lies_behind(
        verifier: TotpVerifier) -> None:
    verifier.verify(ACCOUNT, RFC_CODES[4], now=T)  # four presses lost
    for spent in RFC_CODES[:5]:
        with pytest.raises(OtpReplayed):
            verifier.verify(ACCOUNT, spent, now=T)
    verifier.verify(ACCOUNT, RFC_CODES[5], now=T)
    assert verifier.status(ACCOUNT, now=T).failures == 0


def test_a_code_beyond_the_window_is_a_failure(verifier: TotpVerifier) -> None:
    with pytest.raises(OtpInvalid):
        verifier.verify(ACCOUNT, _code(LOOK_AHEAD + 1), now=T)
    assert verifier.status(ACCOUNT, now=T).failures == 1
    # The window did not move: the code at its edge still works, then the next.
    verifier.verify(ACCOUNT, _code(LOOK_AHEAD), now=T)
    verifier.verify(ACCOUNT, _code(LOOK_AHEAD + 1), now=T)


def test_failures_lock_and_survive_reprovisioning(verifier: TotpVerifier,
                                                   store: OtpStore) -> None:
    for i in range(5):  # spaced past each growing delay
        with pytest.raises((OtpInvalid, OtpLocked)):
            verifier.verify(ACCOUNT, "000000", now=T + 400 * i)
    with pytest.raises(OtpLocked):
        verifier.verify(ACCOUNT, RFC_CODES[0], now=T + 3600)
    verifier.provision_hotp(ACCOUNT, RFC_SECRET_HEX, now=T)  # not a way around the lock
    with pytest.raises(OtpLocked):
        verifier.verify(ACCOUNT, RFC_CODES[0], now=T + 3600)


def test_state_is_kept_in_the_file(verifier: TotpVerifier, store: OtpStore,
                                   tmp_path: Path) -> None:
    verifier.verify(ACCOUNT, RFC_CODES[2], now=T)
    store.close()
    with OtpStore(tmp_path / "otp.sqlite") as again:
        reopened = TotpVerifier(again)
        with pytest.raises(OtpReplayed):
            reopened.verify(ACCOUNT, RFC_CODES[2], now=T)
        reopened.verify(ACCOUNT, RFC_CODES[3], now=T)


def test_one_kind_per_account(verifier: TotpVerifier) -> None:
    verifier.enrol(ACCOUNT, now=T)  # TOTP replaces the token
    with pytest.raises(OtpInvalid):
        verifier.verify(ACCOUNT, RFC_CODES[0], now=T)
    verifier.provision_hotp(ACCOUNT, _rfc_base32(), counter=7, now=T)
    with pytest.raises(OtpReplayed):
        verifier.verify(ACCOUNT, RFC_CODES[6], now=T)
    verifier.verify(ACCOUNT, RFC_CODES[7], now=T)
    verifier.remove(ACCOUNT)
    with pytest.raises(OtpNotEnrolled):
        verifier.verify(ACCOUNT, RFC_CODES[8], now=T)


@pytest.mark.parametrize("secret", ["", "not base32 at all!", "3132333435363738",
                                    "GEZDGNBV"])
def test_short_or_malformed_secrets_are_refused(verifier: TotpVerifier, secret: str) -> None:
    with pytest.raises(HotpSecretInvalid):
        verifier.provision_hotp(ACCOUNT, secret, now=T)
