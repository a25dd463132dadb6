"""SMS one-time passwords: the portal's side of the agent's SMS OTP provider, and the
Personal Space log-in.

A code is 6 random digits, kept only as an HMAC (keyed per installation, salted by the
session), sent to the phone on file, valid 5 minutes (NIST SP 800-63B §5.1.3.1) and for
exactly the hashes its session was opened for (SECURITY: a code sent for one
transaction is refused for another). It is accepted once. Wrong codes add a growing
delay (1, 2, 4, 8 s) and the fifth locks the signer's SMS codes for 15 minutes; sends
are limited per session (one per 30 s, five in all) and per phone and purpose (ten
signing texts an hour).

Personal Space codes are counted apart (SECURITY #42), so that whoever holds a space's
link never stops its owner's signing codes: each request for a code, per phone and per
space, makes the next one wait 30 s, then 1, 2, 4 and at most 5 minutes; wrong codes, per
phone and per space across all sessions, do the same after the first (a typo), and a
right code starts afresh. That bounds guesses at a phone to about fifteen an hour (it
was about 45) with no long lock-out. All counters live in the database
(portal/throttle.py): a restart forgets nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ground.files import write_atomically
from portal.errors import Code, PortalError
from portal.store import OtpSession, Signer, Store
from portal.throttle import CoolDown, Throttles

log = logging.getLogger(__name__)

CODE_TTL = dt.timedelta(minutes=5)
RESEND_AFTER = dt.timedelta(seconds=30)
MAX_SENDS = 5
MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
PHONE_HOURLY = 10  # texts per phone and purpose (Personal Space has its cool-down)
SPACE = "space"  # OtpSession.purpose of a Personal Space log-in
SPACE_SENDS = CoolDown(first=dt.timedelta(seconds=30), cap=dt.timedelta(minutes=5))
SPACE_FAILURES = CoolDown(first=dt.timedelta(seconds=30), cap=dt.timedelta(minutes=5),
                          free=1)


def _space_buckets(kind: str, phone: str, space: str) -> tuple[str, ...]:
    return (f"space-{kind}:phone:{phone}", f"space-{kind}:space:{space.lower()}")


class SmsGateway(Protocol):
    """Where texts go. `send` happens inside the caller's database transaction (`cur`),
    so an outbox gateway records the text atomically with the code it carries; a
    vendor's gateway queues in the same way and delivers after commit."""

    def send(self, cur: object, to: str, text: str) -> None: ...


class OutboxGateway:
    """The testers' gateway: texts are kept in the outbox (the `/outbox` page and
    `qsign portal outbox`), standing in for the person's phone."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def send(self, cur: object, to: str, text: str) -> None:
        self._store.add_sms(cur, to, text)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Sent:
    phone_masked: str
    expires_in: int


def mask_phone(phone: str) -> str:
    """+33612345678 -> +33 6•• ••• •78: enough for the person to recognise it."""
    if len(phone) < 6:
        return "•" * len(phone)
    head, tail = phone[:4], phone[-2:]
    return f"{head}{'•' * (len(phone) - 6)}{tail}"


class SmsOtp:
    def __init__(self, store: Store, gateway: SmsGateway, key: bytes) -> None:
        self.store = store
        self.gateway = gateway
        self._key = key
        self.throttles = Throttles(store.db)

    @classmethod
    def from_state(cls, store: Store, gateway: SmsGateway, state_dir: Path) -> SmsOtp:
        path = state_dir / "otp.key"
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            write_atomically(path, key)
        return cls(store, gateway, key)

    def _digest(self, otp_id: str, code: str) -> str:
        return hmac.new(self._key, f"{otp_id}|{code}".encode(), hashlib.sha256).hexdigest()

    def space_wait(self, space: str, phone: str) -> None:
        """OTP_THROTTLED while a Personal Space code for this space or phone must wait
        (asked before a session is opened, so that refused requests leave no rows)."""
        with self.store.db.transaction() as cur:
            _raise_if_waiting(self.throttles.wait(cur, _space_buckets("send", phone, space),
                                                  self.store.clock()))

    def send(self, otp_id: str, hashes: list[str], text: str, *,
             locked_until: dt.datetime | None = None) -> Sent:
        """A fresh code for `otp_id`, texted with `text` ('{code}' is replaced)."""
        now = self.store.clock()
        if locked_until is not None and locked_until > now:
            raise PortalError(Code.OTP_LOCKED, retryAfter=_seconds(locked_until - now))
        with self.store.db.transaction() as cur:
            session = self.store.otp_session(cur, otp_id)
            _check_hashes(session, hashes)
            if session.used_at is not None:
                raise PortalError(Code.OTP_REPLAYED, "this session's code was already used")
            if session.sends >= MAX_SENDS:
                raise PortalError(Code.OTP_LOCKED, "too many codes for this session")
            if session.sent_at is not None and now - session.sent_at < RESEND_AFTER:
                raise PortalError(Code.OTP_THROTTLED,
                                  retryAfter=_seconds(session.sent_at + RESEND_AFTER - now))
            if session.purpose == SPACE:
                spaces = _space_buckets("send", session.phone, session.subject)
                _raise_if_waiting(self.throttles.wait(cur, spaces, now))
                self.throttles.strike(cur, spaces, now, SPACE_SENDS)
            else:
                texts = f"{session.purpose}-texts:phone:{session.phone}"
                sent, left = self.throttles.counted(cur, texts, now, dt.timedelta(hours=1))
                if sent >= PHONE_HOURLY:
                    raise PortalError(Code.OTP_THROTTLED, "too many texts to this phone",
                                      retryAfter=_seconds(left))
                self.throttles.count(cur, texts, now, dt.timedelta(hours=1))
            code = f"{secrets.randbelow(10**6):06d}"
            self.store.update_otp_session(
                cur, otp_id, code_digest=self._digest(otp_id, code), sent_at=now,
                expires_at=now + CODE_TTL, sends=session.sends + 1, failures=0,
                next_try_at=None)
            self.gateway.send(cur, session.phone, text.replace("{code}", code))
        log.info("SMS code sent for session %s…", otp_id[:6])
        return Sent(mask_phone(session.phone), int(CODE_TTL.total_seconds()))

    def verify_for(self, signer: Signer, otp_id: str, code: str, hashes: list[str]
                   ) -> OtpSession:
        """`verify` within the signer's own lockout: a locked signer is refused before
        the code is looked at, and the failure that locks a session locks the signer
        for LOCKOUT (all their codes, signing and token management alike)."""
        now = self.store.clock()
        if signer.otp_locked_until is not None and signer.otp_locked_until > now:
            raise PortalError(Code.OTP_LOCKED)
        try:
            return self.verify(otp_id, code, hashes)
        except PortalError as exc:
            if exc.code is Code.OTP_LOCKED:
                self.store.set_otp_lock(signer.id, now + LOCKOUT)
            raise

    def verify(self, otp_id: str, code: str, hashes: list[str]) -> OtpSession:
        """Accept `code` once for exactly `hashes`; returns the session it opened.
        Raises PortalError with OTP_* codes (and `lock_signer` semantics for callers
        via OTP_LOCKED)."""
        now = self.store.clock()
        code = code.replace(" ", "")
        with self.store.db.transaction() as cur:
            session = self.store.otp_session(cur, otp_id)
            _check_hashes(session, hashes)
            if session.code_digest is None or session.expires_at is None:
                raise PortalError(Code.OTP_INVALID, "no code was sent for this session",
                                  attemptsLeft=MAX_FAILURES - session.failures)
            if session.failures >= MAX_FAILURES:
                raise PortalError(Code.OTP_LOCKED)
            if session.next_try_at is not None and now < session.next_try_at:
                raise PortalError(Code.OTP_THROTTLED,
                                  retryAfter=_seconds(session.next_try_at - now))
            spaces = _space_buckets("fail", session.phone, session.subject) \
                if session.purpose == SPACE else ()
            _raise_if_waiting(self.throttles.wait(cur, spaces, now))
            right = hmac.compare_digest(self._digest(otp_id, code), session.code_digest)
            if right and session.used_at is not None:
                raise PortalError(Code.OTP_REPLAYED)
            if right and now >= session.expires_at:
                raise PortalError(Code.OTP_EXPIRED)
            if not right:
                failures = session.failures + 1
                self.store.update_otp_session(
                    cur, otp_id, failures=failures,
                    next_try_at=now + dt.timedelta(seconds=2 ** (failures - 1)))
                self.throttles.strike(cur, spaces, now, SPACE_FAILURES)
                wait = max(dt.timedelta(seconds=2 ** (failures - 1)),
                           self.throttles.wait(cur, spaces, now) or dt.timedelta(0))
                left = MAX_FAILURES - failures
                if left == 0:
                    error = PortalError(Code.OTP_LOCKED)
                else:
                    error = PortalError(Code.OTP_INVALID, attemptsLeft=left,
                                        retryAfter=_seconds(wait))
            else:
                self.store.update_otp_session(cur, otp_id, used_at=now)
                self.throttles.clear(cur, spaces)
                return session
        # Outside the `with`: the failure count is committed before the error leaves.
        raise error


def _raise_if_waiting(wait: dt.timedelta | None) -> None:
    if wait is not None:
        raise PortalError(Code.OTP_THROTTLED, "too many codes asked or tried: wait",
                          retryAfter=_seconds(wait))


def _check_hashes(session: OtpSession, hashes: list[str]) -> None:
    if sorted(session.hashes) != sorted(hashes):
        raise PortalError(Code.HASHES_MISMATCH, "these hashes are not the ones this "
                          "session authorises")


def _seconds(delta: dt.timedelta) -> int:
    return max(1, int(delta.total_seconds() + 0.999))
