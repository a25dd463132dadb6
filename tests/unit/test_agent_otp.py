"""TOTP second factor: window, replay, throttling, lockout, persistence and clock jumps
(SECURITY #18, #19, #21, #23, #30, #31). Real SQLite files; `now` is injected, nothing
sleeps."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from PIL import Image

from agent.identity.otp import (
    OtpInvalid,
    OtpLocked,
    OtpNotEnrolled,
    OtpReplayed,
    OtpStore,
    OtpThrottled,
    ThrottlePolicy,
    TotpVerifier,
)
from tests.support.racing import race

ACCOUNT = "alice@example.test"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
T = 30 * 60_000_000 + 7  # a wall-clock time 7 s into step 60,000,000
STEP = T // 30
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def code(step: int, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def code_at(when: float) -> str:
    return code(int(when // 30))


def enrol_fixed(verifier: TotpVerifier, store: OtpStore, account: str = ACCOUNT) -> None:
    """Enrol, then pin the secret so that the codes around T are known and distinct."""
    verifier.enrol(account, now=T)
    with store.transaction(account) as txn:
        assert txn.enrolment is not None
        txn.save_enrolment(replace(txn.enrolment, secret=SECRET))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "otp.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[OtpStore]:
    with OtpStore(db) as s:
        yield s


@pytest.fixture
def verifier(store: OtpStore) -> TotpVerifier:
    v = TotpVerifier(store)
    enrol_fixed(v, store)
    return v


def test_fixed_codes_around_t_are_distinct() -> None:
    # The window tests below mean something only if no two of these coincide.
    assert len({code(STEP + d) for d in range(-3, 4)}) == 7


# Enrolment ------------------------------------------------------------------------------


def test_enrolment_gives_uri_and_qr_png(store: OtpStore) -> None:
    enrolment = TotpVerifier(store, issuer="qsign").enrol(ACCOUNT, now=T)
    assert len(base64.b32decode(enrolment.secret)) == 20  # 160 bits
    uri = urlparse(enrolment.uri)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert uri.path == "/qsign:alice%40example.test"
    query = parse_qs(uri.query)
    assert query["secret"] == [enrolment.secret]
    assert query["issuer"] == ["qsign"]
    parsed = pyotp.parse_uri(enrolment.uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.at(T) == pyotp.TOTP(enrolment.secret).at(T)
    assert enrolment.qr_png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(enrolment.qr_png))
    assert image.format == "PNG" and image.width == image.height > 100
    assert enrolment.secret not in repr(enrolment)


def test_enrolled_secret_verifies(store: OtpStore) -> None:
    verifier = TotpVerifier(store)
    enrolment = verifier.enrol(ACCOUNT, now=T)
    verifier.verify(ACCOUNT, code(STEP, enrolment.secret), now=T)


def test_eight_digits_and_another_period(store: OtpStore) -> None:
    verifier = TotpVerifier(store, step=60, digits=8)
    enrolment = verifier.enrol(ACCOUNT, now=T)
    query = parse_qs(urlparse(enrolment.uri).query)
    assert query["digits"] == ["8"] and query["period"] == ["60"]
    verifier.verify(ACCOUNT, pyotp.TOTP(enrolment.secret, digits=8, interval=60).at(T), now=T)


def test_not_enrolled(store: OtpStore) -> None:
    with pytest.raises(OtpNotEnrolled):
        TotpVerifier(store).verify("bob", "123456", now=T)


def test_account_id_checked(store: OtpStore) -> None:
    with pytest.raises(ValueError):
        TotpVerifier(store).enrol("", now=T)


def test_reenrolment_replaces_the_secret_and_keeps_the_lock(
        store: OtpStore, verifier: TotpVerifier) -> None:
    """SECURITY #33: a new secret is no way around a lockout (only an administrator's
    unlock lifts it)."""
    fail_until_locked(verifier, T)
    assert verifier.status(ACCOUNT, now=T + 10_000).locked
    fresh = verifier.enrol(ACCOUNT, now=T + 10_000)
    assert fresh.secret != SECRET
    assert verifier.status(ACCOUNT, now=T + 10_000).locked
    with pytest.raises(OtpLocked):
        verifier.verify(ACCOUNT, code(STEP, fresh.secret), now=T)
    verifier.unlock(ACCOUNT)
    verifier.verify(ACCOUNT, code(STEP, fresh.secret), now=T)


# Window and replay ----------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_adjacent_steps_accepted(verifier: TotpVerifier, offset: int) -> None:
    verifier.verify(ACCOUNT, code(STEP + offset), now=T)


@pytest.mark.parametrize("offset", [-2, 2, -3, 3])
def test_two_steps_away_refused(verifier: TotpVerifier, offset: int) -> None:
    with pytest.raises(OtpInvalid) as refused:
        verifier.verify(ACCOUNT, code(STEP + offset), now=T)
    assert refused.value.attempts_left == 9


def test_edges_of_the_current_step(verifier: TotpVerifier) -> None:
    start = STEP * 30
    with pytest.raises(OtpInvalid):
        verifier.verify(ACCOUNT, code(STEP - 2), now=start)  # two steps back at the edge
    verifier.verify(ACCOUNT, code(STEP - 1), now=start)
    verifier.verify(ACCOUNT, code(STEP + 1), now=start + 29.999)


def test_same_code_replayed_refused(verifier: TotpVerifier) -> None:
    verifier.verify(ACCOUNT, code(STEP), now=T)
    with pytest.raises(OtpReplayed):
        verifier.verify(ACCOUNT, code(STEP), now=T + 1)
    with pytest.raises(OtpReplayed):  # still in the window a step later
        verifier.verify(ACCOUNT, code(STEP), now=T + 30)
    assert verifier.status(ACCOUNT, now=T + 30).failures == 0  # a replay is not a guess


def test_older_step_after_newer_refused(verifier: TotpVerifier) -> None:
    verifier.verify(ACCOUNT, code(STEP + 1), now=T)
    with pytest.raises(OtpReplayed):
        verifier.verify(ACCOUNT, code(STEP), now=T)
    with pytest.raises(OtpReplayed):
        verifier.verify(ACCOUNT, code(STEP - 1), now=T)
    verifier.verify(ACCOUNT, code(STEP + 2), now=T + 30)  # the next step is fine


def test_spaces_in_a_code_are_ignored(verifier: TotpVerifier) -> None:
    typed = code(STEP)
    verifier.verify(ACCOUNT, f"{typed[:3]} {typed[3:]}", now=T)


@pytest.mark.parametrize("typed", ["", "abcdef", "12345", "1234567", "١٢٣٤٥٦", "12345\x00"])
def test_malformed_codes_are_failures(verifier: TotpVerifier, typed: str) -> None:
    with pytest.raises(OtpInvalid) as refused:
        verifier.verify(ACCOUNT, typed, now=T)
    assert refused.value.attempts_left == 9


def test_concurrent_use_of_one_code_accepts_it_once(db: Path, verifier: TotpVerifier) -> None:
    # Eight agents on one state file (threads here; the write lock is SQLite's).
    stores = [OtpStore(db) for _ in range(8)]

    def attempt(store: OtpStore) -> str:
        try:
            TotpVerifier(store).verify(ACCOUNT, code(STEP), now=T)
            return "accepted"
        except OtpReplayed:
            return "replayed"

    outcomes = race(attempt, stores)
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["accepted"] + ["replayed"] * 7


# Throttling and lockout -----------------------------------------------------------------


def fail_until_locked(verifier: TotpVerifier, now: float,
                      failures: int = 100) -> tuple[list[int], float]:
    """Wrong codes, each as soon as allowed, until locked (or `failures` were made).
    Answers the delays announced and the time it stopped at."""
    delays: list[int] = []
    while len(delays) < failures:
        try:
            verifier.verify(ACCOUNT, "000000", now=now)
        except OtpInvalid as e:
            delays.append(e.retry_after_seconds)
            now += e.retry_after_seconds
        except OtpLocked:
            break
    return delays, now


def test_wrong_codes_grow_delays_then_lock(verifier: TotpVerifier) -> None:
    delays, locked_at = fail_until_locked(verifier, T)
    assert delays == [0, 0, 0, 1, 2, 4, 8, 16, 32]
    status = verifier.status(ACCOUNT, now=locked_at)
    assert status.locked and status.retry_after_seconds is None and status.attempts_left == 0
    with pytest.raises(OtpLocked) as locked:  # even the right code, even a day later
        verifier.verify(ACCOUNT, code_at(locked_at + 86400), now=locked_at + 86400)
    assert locked.value.retry_after_seconds is None
    verifier.unlock(ACCOUNT)
    verifier.verify(ACCOUNT, code_at(locked_at + 86400), now=locked_at + 86400)


def test_throttled_attempts_are_not_checked_or_counted(verifier: TotpVerifier) -> None:
    for _ in range(4):
        with pytest.raises(OtpInvalid):
            verifier.verify(ACCOUNT, "000000", now=T)
    with pytest.raises(OtpThrottled) as throttled:  # the right code, too early
        verifier.verify(ACCOUNT, code(STEP), now=T + 0.5)
    assert throttled.value.retry_after_seconds == 1
    assert verifier.status(ACCOUNT, now=T + 0.5).failures == 4
    verifier.verify(ACCOUNT, code(STEP), now=T + 1)  # then it is accepted


def test_success_resets_the_failure_count(verifier: TotpVerifier) -> None:
    for _ in range(3):
        with pytest.raises(OtpInvalid):
            verifier.verify(ACCOUNT, "000000", now=T)
    verifier.verify(ACCOUNT, code(STEP), now=T)
    status = verifier.status(ACCOUNT, now=T)
    assert (status.failures, status.attempts_left, status.retry_after_seconds) == (0, 10, 0)
    with pytest.raises(OtpInvalid) as refused:
        verifier.verify(ACCOUNT, "000000", now=T)
    assert (refused.value.attempts_left, refused.value.retry_after_seconds) == (9, 0)


def test_configurable_lockout_threshold(store: OtpStore) -> None:
    verifier = TotpVerifier(store, throttle=ThrottlePolicy(max_failures=3))
    enrol_fixed(verifier, store)
    assert fail_until_locked(verifier, T)[0] == [0, 0]


def test_timed_lockout_allows_one_try_after_it(store: OtpStore) -> None:
    verifier = TotpVerifier(store, throttle=ThrottlePolicy(lockout_seconds=900))
    enrol_fixed(verifier, store)
    _, locked_at = fail_until_locked(verifier, T)
    with pytest.raises(OtpLocked) as locked:
        verifier.verify(ACCOUNT, "000000", now=locked_at + 899)
    assert locked.value.retry_after_seconds == 1
    with pytest.raises(OtpLocked) as locked:  # one more failure: locked again at once
        verifier.verify(ACCOUNT, "000000", now=locked_at + 900)
    assert locked.value.retry_after_seconds == 900
    later = locked_at + 1800
    verifier.verify(ACCOUNT, code_at(later), now=later)
    assert verifier.status(ACCOUNT, now=later).failures == 0


@pytest.mark.parametrize("kwargs", [{"max_failures": 0}, {"max_failures": 101},
                                    {"lockout_seconds": 0}, {"base_delay": -1}])
def test_throttle_policy_rules(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(**kwargs)  # type: ignore[arg-type]


def test_verifier_parameters_checked(store: OtpStore) -> None:
    with pytest.raises(ValueError):
        TotpVerifier(store, digits=4)
    with pytest.raises(ValueError):
        TotpVerifier(store, step=0)


# Persistence: restarts and kill -9 ------------------------------------------------------


def test_lockout_and_last_step_survive_a_restart(db: Path, verifier: TotpVerifier,
                                                 store: OtpStore) -> None:
    verifier.verify(ACCOUNT, code(STEP), now=T)
    for i in range(4):  # the 4th failure asks for 1 s
        with pytest.raises(OtpInvalid):
            verifier.verify(ACCOUNT, "000000", now=T + i * 0.1)
    store.close()

    with OtpStore(db) as reopened:
        restarted = TotpVerifier(reopened)
        with pytest.raises(OtpThrottled) as throttled:
            restarted.verify(ACCOUNT, "000000", now=T + 1)
        assert throttled.value.retry_after_seconds == 1
        with pytest.raises(OtpReplayed):
            restarted.verify(ACCOUNT, code(STEP), now=T + 2)
        _, locked_at = fail_until_locked(restarted, T + 2)

    with OtpStore(db) as again:
        restarted = TotpVerifier(again)
        status = restarted.status(ACCOUNT, now=locked_at)
        assert status.locked and status.failures == 10
        with pytest.raises(OtpLocked):
            restarted.verify(ACCOUNT, code_at(locked_at), now=locked_at)


_KILLED_AFTER_VERIFY = """
import os, signal, sys
from agent.identity.otp import OtpStore, TotpVerifier
store = OtpStore(sys.argv[1])
TotpVerifier(store).verify(sys.argv[2], sys.argv[3], now=float(sys.argv[4]))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_code_accepted_just_before_kill_9_stays_used(db: Path, verifier: TotpVerifier,
                                                       store: OtpStore) -> None:
    store.close()
    child = subprocess.run([sys.executable, "-c", _KILLED_AFTER_VERIFY, str(db), ACCOUNT,
                            code(STEP), str(T)], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2], check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with OtpStore(db) as reopened, pytest.raises(OtpReplayed):
        TotpVerifier(reopened).verify(ACCOUNT, code(STEP), now=T + 1)


def test_state_file_is_owner_only(db: Path, verifier: TotpVerifier) -> None:
    assert os.stat(db).st_mode & 0o777 == 0o600


# Clock jumps ------------------------------------------------------------------------------


def test_clock_set_back_does_not_end_a_delay(verifier: TotpVerifier) -> None:
    delays, _ = fail_until_locked(verifier, T, failures=6)
    assert delays[-1] == 4
    back = T - 3600
    with pytest.raises(OtpThrottled) as throttled:
        verifier.verify(ACCOUNT, code_at(back), now=back)
    assert throttled.value.retry_after_seconds == 4  # the full delay again, from now
    with pytest.raises(OtpThrottled):
        verifier.verify(ACCOUNT, code_at(back), now=back + 3.5)
    verifier.verify(ACCOUNT, code_at(back + 4), now=back + 4)


def test_clock_set_back_does_not_end_a_lockout(store: OtpStore, verifier: TotpVerifier) -> None:
    _, locked_at = fail_until_locked(verifier, T)
    with pytest.raises(OtpLocked):
        verifier.verify(ACCOUNT, code(STEP - 1000), now=T - 30_000)

    timed = TotpVerifier(store, throttle=ThrottlePolicy(lockout_seconds=900))
    with pytest.raises(OtpLocked) as locked:
        timed.verify(ACCOUNT, "000000", now=locked_at - 86400)
    assert locked.value.retry_after_seconds == 900
    with pytest.raises(OtpLocked):
        timed.verify(ACCOUNT, "000000", now=locked_at - 86400 + 899)


def test_clock_set_back_refuses_steps_already_used(verifier: TotpVerifier) -> None:
    verifier.verify(ACCOUNT, code(STEP), now=T)
    with pytest.raises(OtpReplayed):
        verifier.verify(ACCOUNT, code(STEP - 1), now=T - 30)
    verifier.verify(ACCOUNT, code(STEP + 1), now=T + 30)
