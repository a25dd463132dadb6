"""The second factor: TOTP (RFC 6238) verified by the agent, and the interface of the
SMS OTP that the signature service sends.

What this module promises (DESIGN.md "Security model", SECURITY #16, #18, #19, #21,
#23, #30, #31):

- A TOTP code is accepted for the current 30 s step or one step either side, never
  two steps away; each step is accepted once, and a step at or before the last
  accepted one is refused as a replay.
- Codes are compared with `hmac.compare_digest`, every code of the window each time.
- Consecutive failures are throttled with growing delays (0, 0, 0, 1, 2, 4, 8, ... s),
  then the account is locked (NIST SP 800-63B §5.2.2: at most 100 consecutive
  failures). A success resets the count.
- Every change (last accepted step, failure count, not-before time) is committed,
  with synchronous=FULL, before `verify` answers: a kill -9 right after an accepted
  code leaves that code used, and a restart keeps the throttle.

Clocks. TOTP steps come from the wall clock (`time.time()`), as RFC 6238 requires.
Delays are stored as absolute wall-clock "not before" times, so they survive a
restart. When the clock has gone back, a stored time lies further ahead than the
delay it was set for; the delay is then restarted from the current time
(``not_before = now + delay``) and written back. The wait is thus never shorter
than it would have been on a steady clock, and never longer than one full delay.
After the clock has gone back, codes of steps at or before the last accepted step
are refused as replays until the clock is past it again.
"""

from __future__ import annotations

import hmac
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import pyotp

from agent.identity.hotp import SCHEMA as HOTP_SCHEMA
from agent.identity.hotp import HotpEnrolment, match, normalised_secret
from ground.qr import qr_png
from ground.sql import Cursor, Database

NIST_MAX_FAILURES = 100  # SP 800-63B §5.2.2
DEFAULT_MAX_FAILURES = 10
WINDOW = 1  # steps either side of the current one (SECURITY #19)


# Errors ---------------------------------------------------------------------------------


class OtpError(Exception):
    """Base of every second-factor refusal."""


class OtpNotEnrolled(OtpError):
    def __init__(self, account: str) -> None:
        super().__init__("no one-time password is enrolled for this account")
        self.account = account


class OtpInvalid(OtpError):
    """A wrong code. `retry_after_seconds` is the wait before the next try (0: none)."""

    def __init__(self, attempts_left: int | None, retry_after_seconds: int = 0) -> None:
        left = "" if attempts_left is None else f" ({attempts_left} attempts left)"
        super().__init__(f"wrong one-time password{left}")
        self.attempts_left = attempts_left
        self.retry_after_seconds = retry_after_seconds


class OtpReplayed(OtpError):
    """The code is right but its time step was already used, or is older than the last
    step accepted (RFC 6238 §5.2: a verifier must not accept the second attempt)."""

    def __init__(self) -> None:
        super().__init__("this one-time password was already used; wait for the next one")


class OtpThrottled(OtpError):
    """Too many recent failures: no code is checked before `retry_after_seconds`."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many wrong one-time passwords; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class OtpLocked(OtpError):
    """Locked after too many consecutive failures. `retry_after_seconds` is None when
    only an administrator (`unlock`) or a new enrolment lifts the lock."""

    def __init__(self, retry_after_seconds: int | None = None) -> None:
        when = "until reset" if retry_after_seconds is None else f"for {retry_after_seconds} s"
        super().__init__(f"one-time passwords locked {when} after too many failures")
        self.retry_after_seconds = retry_after_seconds


# Records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """A stored TOTP secret (RFC 6238) and the last time step accepted for it."""

    account: str
    secret: str  # base32
    digits: int
    period: int
    last_step: int | None
    enrolled_at: float


@dataclass(frozen=True, slots=True)
class FailureState:
    """Consecutive failures of one account, shared by every OTP kind it uses."""

    failures: int = 0
    not_before: float | None = None  # wall clock; a lockout's end when locked for a time


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS otp_totp ("
    " account TEXT PRIMARY KEY, secret TEXT NOT NULL, digits INTEGER NOT NULL,"
    " period INTEGER NOT NULL, last_step INTEGER, enrolled_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS otp_failures ("
    " account TEXT PRIMARY KEY, failures INTEGER NOT NULL, not_before REAL)",
    HOTP_SCHEMA,
)


class OtpTransaction:
    """One account's OTP rows, read and written under the database's write lock."""

    def __init__(self, cur: Cursor, account: str) -> None:
        self._cur = cur
        self.account = account
        cur.execute("SELECT secret, digits, period, last_step, enrolled_at FROM otp_totp "
                    "WHERE account = ?", (account,))
        row = cur.fetchone()
        self.enrolment = None if row is None else TotpEnrolment(account, *row)
        cur.execute("SELECT secret, digits, counter, enrolled_at FROM otp_hotp "
                    "WHERE account = ?", (account,))
        row = cur.fetchone()
        self.hotp = None if row is None else HotpEnrolment(account, *row)
        cur.execute("SELECT failures, not_before FROM otp_failures WHERE account = ?",
                    (account,))
        row = cur.fetchone()
        self.failures = FailureState() if row is None else FailureState(*row)

    def save_enrolment(self, enrolment: TotpEnrolment) -> None:
        self._cur.execute(
            "INSERT INTO otp_totp (account, secret, digits, period, last_step, enrolled_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET "
            "secret = excluded.secret, digits = excluded.digits, period = excluded.period, "
            "last_step = excluded.last_step, enrolled_at = excluded.enrolled_at",
            (self.account, enrolment.secret, enrolment.digits, enrolment.period,
             enrolment.last_step, enrolment.enrolled_at))
        self.enrolment = enrolment
        self._cur.execute("DELETE FROM otp_hotp WHERE account = ?", (self.account,))
        self.hotp = None  # one OTP kind per account: the new one replaces the other

    def save_hotp(self, enrolment: HotpEnrolment) -> None:
        self._cur.execute(
            "INSERT INTO otp_hotp (account, secret, digits, counter, enrolled_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET "
            "secret = excluded.secret, digits = excluded.digits, "
            "counter = excluded.counter, enrolled_at = excluded.enrolled_at",
            (self.account, enrolment.secret, enrolment.digits, enrolment.counter,
             enrolment.enrolled_at))
        self.hotp = enrolment
        self._cur.execute("DELETE FROM otp_totp WHERE account = ?", (self.account,))
        self.enrolment = None

    def save_failures(self, state: FailureState) -> None:
        if state == self.failures:
            return
        if state == FailureState():
            self._cur.execute("DELETE FROM otp_failures WHERE account = ?", (self.account,))
        else:
            self._cur.execute(
                "INSERT INTO otp_failures (account, failures, not_before) VALUES (?, ?, ?) "
                "ON CONFLICT (account) DO UPDATE SET failures = excluded.failures, "
                "not_before = excluded.not_before",
                (self.account, state.failures, state.not_before))
        self.failures = state

    def delete(self) -> None:
        self._cur.execute("DELETE FROM otp_totp WHERE account = ?", (self.account,))
        self._cur.execute("DELETE FROM otp_failures WHERE account = ?", (self.account,))
        self._cur.execute("DELETE FROM otp_hotp WHERE account = ?", (self.account,))
        self.enrolment = self.hotp = None
        self.failures = FailureState()


class OtpStore:
    """TOTP enrolments and failure counters in one SQLite file (WAL, synchronous=FULL).

    Each `transaction` holds the write lock from its first read to its commit, so two
    requests (threads or processes) can never both accept the same step.
    """

    def __init__(self, store: str | os.PathLike[str] | Database, *,
                 legacy: Path | None = None) -> None:
        """`legacy`: a file of an earlier agent that kept OTP state apart; its rows are
        imported once (existing rows win) and the file renamed to *.migrated."""
        self._owns_db = not isinstance(store, Database)
        if isinstance(store, Database):
            self._db = store  # shared with the journal (agent.journal): one fsync per step
            store.add_schema(_SCHEMA)
        else:
            self._db = Database.sqlite(store, _SCHEMA)
        if legacy is not None and legacy.exists() and legacy != self._db.path:
            self._import(legacy)

    def _import(self, legacy: Path) -> None:
        old = sqlite3.connect(legacy)
        try:
            totp = old.execute("SELECT account, secret, digits, period, last_step, "
                               "enrolled_at FROM otp_totp").fetchall()
            failures = old.execute("SELECT account, failures, not_before "
                                   "FROM otp_failures").fetchall()
        except sqlite3.DatabaseError:
            totp, failures = [], []
        finally:
            old.close()  # checkpoints and removes its WAL
        with self._db.transaction() as cur:
            cur.executemany("INSERT INTO otp_totp VALUES (?, ?, ?, ?, ?, ?) "
                            "ON CONFLICT (account) DO NOTHING", totp)
            cur.executemany("INSERT INTO otp_failures VALUES (?, ?, ?) "
                            "ON CONFLICT (account) DO NOTHING", failures)
        legacy.rename(legacy.with_name(legacy.name + ".migrated"))

    def close(self) -> None:
        if self._owns_db:
            self._db.close()

    def sync(self) -> None:
        """Make a `durable=False` transaction power-loss durable now."""
        self._db.sync()

    def __enter__(self) -> OtpStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def accounts(self, prefix: str) -> list[str]:
        """Accounts with a TOTP secret whose name starts with `prefix` (a token's
        credentials: "TOKEN_ID/")."""
        with self._db.transaction() as cur:
            cur.execute("SELECT account FROM otp_totp WHERE substr(account, 1, ?) = ? "
                        "ORDER BY account", (len(prefix), prefix))
            return [a for (a,) in cur.fetchall()]

    @contextmanager
    def transaction(self, account: str, *, durable: bool = True) -> Iterator[OtpTransaction]:
        """Committed when the body returns, rolled back when it raises. durable=False:
        see `ground.sql` (survives kill -9; the caller owes a later fsync)."""
        with self._db.transaction(durable=durable) as cur:
            yield OtpTransaction(cur, account)


# Throttling -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Growing delays after consecutive failures, then a lockout.

    With the defaults: failures 1-3 cost nothing, the 4th makes the next try wait 1 s,
    then 2, 4, 8, ... s (at most `max_delay`); the 10th locks the account, for
    `lockout_seconds` or, when that is None, until `TotpVerifier.unlock` or a new
    enrolment. After a timed lockout one try is allowed; if it fails, the lock is back.
    """

    max_failures: int = DEFAULT_MAX_FAILURES
    free_failures: int = 3
    base_delay: float = 1.0
    max_delay: float = 300.0
    lockout_seconds: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_failures <= NIST_MAX_FAILURES:
            raise ValueError(f"max_failures must be 1..{NIST_MAX_FAILURES} (SP 800-63B)")
        if self.free_failures < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays and free failures must not be negative")
        if self.lockout_seconds is not None and self.lockout_seconds <= 0:
            raise ValueError("lockout_seconds must be positive (or None: until reset)")

    def locked(self, failures: int) -> bool:
        return failures >= self.max_failures

    def delay_after(self, failures: int) -> float:
        """The wait after `failures` consecutive failures; inf for a lock until reset."""
        if self.locked(failures):
            return math.inf if self.lockout_seconds is None else self.lockout_seconds
        if failures <= self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures - 1, 64)
        return float(min(self.max_delay, self.base_delay * 2**exponent))

    def admit(self, state: FailureState, now: float) -> tuple[FailureState, OtpError | None]:
        """May a code be checked now? Answers the state to store (re-anchored when the
        clock went back) and the refusal, if any."""
        delay = self.delay_after(state.failures)
        if delay == math.inf:
            return state, OtpLocked(None)
        if delay == 0:
            return state, None
        not_before = state.not_before
        if not_before is None or not_before - now > delay:
            # The clock went back (or the policy changed): the full delay from now.
            not_before = now + delay
            state = replace(state, not_before=not_before)
        if now >= not_before:
            return state, None
        wait = _seconds(not_before - now)
        return state, OtpLocked(wait) if self.locked(state.failures) else OtpThrottled(wait)

    def failed(self, state: FailureState, now: float) -> tuple[FailureState, OtpError]:
        failures = state.failures + 1
        delay = self.delay_after(failures)
        not_before = None if delay in (0, math.inf) else now + delay
        state = FailureState(failures, not_before)
        if delay == math.inf:
            return state, OtpLocked(None)
        if self.locked(failures):
            return state, OtpLocked(_seconds(delay))
        left = self.max_failures - failures
        return state, OtpInvalid(left, _seconds(delay) if delay else 0)

    def attempts_left(self, state: FailureState) -> int:
        return max(0, self.max_failures - state.failures)


def _seconds(delay: float) -> int:
    return max(1, math.ceil(delay))


# TOTP -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What the person scans into an authenticator app. Show once; never log."""

    secret: str  # base32, for typing in by hand
    uri: str  # otpauth://totp/... (Key Uri Format)
    qr_png: bytes  # the URI as a QR code

    def __repr__(self) -> str:
        return f"Enrolment(secret=<hidden>, uri=<hidden>, qr_png=<{len(self.qr_png)} bytes>)"


@dataclass(frozen=True, slots=True)
class OtpStatus:
    enrolled: bool
    failures: int
    attempts_left: int
    locked: bool
    retry_after_seconds: int | None  # 0: a code may be tried now; None: locked until reset


class TotpVerifier:
    """RFC 6238 TOTP (HMAC-SHA1, as authenticator apps expect) with the persisted
    replay, throttle and lockout state of `OtpStore`."""

    def __init__(self, store: OtpStore, *, issuer: str = "qsign", step: int = 30,
                 digits: int = 6, throttle: ThrottlePolicy | None = None) -> None:
        if step <= 0:
            raise ValueError("step must be positive")
        if not 6 <= digits <= 8:
            raise ValueError("digits must be 6..8 (RFC 4226 §5.3)")
        self._store = store
        self.issuer = issuer
        self.step = step
        self.digits = digits
        self.throttle = throttle or ThrottlePolicy()

    def enrol(self, account: str, *, now: float | None = None) -> Enrolment:
        """A new 160-bit secret (RFC 4226 §4 R6) for `account`, replacing any previous one.
        Failures, delays and lockouts stay as they are (SECURITY #33): a new secret is not
        a way around them. The caller authorises the enrolment (agent.secondfactor)."""
        _check_account(account)
        now = time.time() if now is None else now
        secret = pyotp.random_base32()  # 32 base32 characters: 160 bits
        uri = pyotp.TOTP(secret, digits=self.digits, interval=self.step).provisioning_uri(
            name=account, issuer_name=self.issuer)
        with self._store.transaction(account) as txn:
            txn.save_enrolment(TotpEnrolment(account, secret, self.digits, self.step, None, now))
        return Enrolment(secret, uri, qr_png(uri))

    def provision_hotp(self, account: str, secret: str, *, counter: int = 0,
                       digits: int = 6, now: float | None = None) -> None:
        """An OATH HOTP token's secret (base32 or hex, from its seed file) for `account`,
        replacing any TOTP secret; failures and lockouts stay (SECURITY #33). Raises
        HotpSecretInvalid or ValueError."""
        _check_account(account)
        if counter < 0 or not 6 <= digits <= 8:
            raise ValueError("an HOTP counter is >= 0 and its codes have 6..8 digits")
        enrolment = HotpEnrolment(account, normalised_secret(secret), digits, counter,
                                  time.time() if now is None else now)
        with self._store.transaction(account) as txn:
            txn.save_hotp(enrolment)

    def verify(self, account: str, code: str, *, now: float | None = None,
               durable: bool = True) -> None:
        """Accept `code` once (RFC 6238 §5.2, ±1 step), or raise OtpNotEnrolled,
        OtpLocked, OtpThrottled, OtpReplayed or OtpInvalid. Whatever the outcome, the new
        state is committed before this returns or raises.

        durable=False saves an fsync on success: the accepted step is committed so that
        it survives kill -9 at once, and survives a power loss with the caller's next
        durable commit on the same database (the signing service's SAD and journal
        transaction) or `OtpStore.sync()`, which the caller owes before it answers
        anyone. A refusal is made power-loss durable here, before it is raised."""
        now = time.time() if now is None else now
        with self._store.transaction(account, durable=durable) as txn:
            error = self._attempt(txn, code, now)
        if error is not None:
            if not durable:
                self._store.sync()
            raise error

    def _attempt(self, txn: OtpTransaction, code: str, now: float) -> OtpError | None:
        enrolment = txn.enrolment
        if enrolment is None and txn.hotp is None:
            return OtpNotEnrolled(txn.account)
        state, refusal = self.throttle.admit(txn.failures, now)
        txn.save_failures(state)
        if refusal is not None:
            return refusal
        if enrolment is None:
            assert txn.hotp is not None
            found = match(txn.hotp, code)
            if found.counter is not None:
                txn.save_hotp(replace(txn.hotp, counter=found.counter + 1))
                txn.save_failures(FailureState())
                return None
            if found.spent:
                return OtpReplayed()
            state, error = self.throttle.failed(state, now)
            txn.save_failures(state)
            return error
        matched = _matching_steps(enrolment, code, now)
        last = enrolment.last_step
        fresh = [s for s in matched if last is None or s > last]
        if fresh:
            txn.save_enrolment(replace(enrolment, last_step=max(fresh)))
            txn.save_failures(FailureState())
            return None
        if matched:
            # Not a guess (the code is right), so it does not count as a failure.
            return OtpReplayed()
        state, error = self.throttle.failed(state, now)
        txn.save_failures(state)
        return error

    def status(self, account: str, *, now: float | None = None) -> OtpStatus:
        now = time.time() if now is None else now
        with self._store.transaction(account) as txn:
            enrolled = txn.enrolment is not None or txn.hotp is not None
            state = txn.failures
        _, refusal = self.throttle.admit(state, now)
        if isinstance(refusal, OtpLocked):
            retry: int | None = refusal.retry_after_seconds
        elif isinstance(refusal, OtpThrottled):
            retry = refusal.retry_after_seconds
        else:
            retry = 0
        return OtpStatus(enrolled, state.failures, self.throttle.attempts_left(state),
                         isinstance(refusal, OtpLocked), retry)

    def unlock(self, account: str) -> None:
        """An administrator's reset of the failure count and any lock."""
        with self._store.transaction(account) as txn:
            txn.save_failures(FailureState())

    def remove(self, account: str) -> None:
        with self._store.transaction(account) as txn:
            txn.delete()


def _matching_steps(enrolment: TotpEnrolment, code: str, now: float) -> list[int]:
    """The steps of the window whose code equals `code`, each compared in constant time
    (SECURITY #23); every step of the window is compared, whatever matched before."""
    typed = code.replace(" ", "").encode("utf-8")
    totp = pyotp.TOTP(enrolment.secret, digits=enrolment.digits, interval=enrolment.period)
    current = int(now // enrolment.period)
    matched = []
    for step in range(current - WINDOW, current + WINDOW + 1):
        if step < 0:
            continue
        if hmac.compare_digest(totp.generate_otp(step).encode("ascii"), typed):
            matched.append(step)
    return matched


def _check_account(account: str) -> None:
    if not account or len(account) > 256 or not account.isprintable():
        raise ValueError("an account id is 1..256 printable characters")


# SMS OTP --------------------------------------------------------------------------------


class OtpMethodNotAllowed(OtpError):
    """This agent's otp_mode does not take this kind of code (or no SMS service is set)."""


class OtpExpired(OtpError):
    """The code was right once, but its 5 minutes are over: ask for a new one."""

    def __init__(self) -> None:
        super().__init__("this one-time password has expired; ask for a new one")


class OtpSessionUnknown(OtpError):
    """The signature service does not know this OTP session (or it has ended)."""

    def __init__(self) -> None:
        super().__init__("the signature service does not know this OTP session")


class OtpHashesMismatch(OtpError):
    """The OTP session was opened for other hashes than those presented (SECURITY #22)."""

    def __init__(self) -> None:
        super().__init__("this OTP session was opened for other documents")


class OtpServiceUnavailable(OtpError):
    """The service that checks SMS codes did not answer, or answered outside its
    contract. Nothing was verified."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the SMS one-time password service is unavailable: {detail}")
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SmsChallenge:
    """A code is on its way to the signer's phone."""

    phone_masked: str
    expires_in: int  # seconds


class SmsOtpProvider(Protocol):
    """A one-time password sent by SMS by the signature service (the portal), bound to
    the hashes it authorises (SECURITY #22: a code sent for one transaction is refused
    for another). The portal generates, sends and checks the code, for an OTP session
    it opened (portal/API.md "SMS OTP"); the agent only relays, and only to the
    service named in its own configuration.

    Implementations raise the errors of this module: `OtpInvalid`, `OtpExpired`,
    `OtpReplayed`, `OtpThrottled`, `OtpLocked`, `OtpHashesMismatch`,
    `OtpSessionUnknown`, `OtpServiceUnavailable`. A code expires after at most
    5 minutes (SP 800-63B §5.1.3.1).
    """

    async def send(self, session: str, hashes: Sequence[bytes]) -> SmsChallenge:
        """Ask the portal to text a fresh code for exactly `hashes` in `session`."""
        ...

    async def verify(self, session: str, code: str, hashes: Sequence[bytes]) -> None:
        """Accept `code` once, and only for the same `hashes` it was sent for."""
        ...

    async def close(self) -> None:
        ...
