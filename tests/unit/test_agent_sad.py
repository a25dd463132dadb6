"""Signature activation data: single use, bound to credential, hashes and origin, at most
5 minutes, surviving restarts and kill -9 (SECURITY #7, #8, #30, #31). Real SQLite
files; `now` and the monotonic clock are injected, nothing sleeps."""

from __future__ import annotations

import base64
import hashlib
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.policy import MAX_TTL_SECONDS, Grant, SadInvalid, SadIssuer, SadRefusal

T = 1_800_000_000.0
CREDENTIAL = "9C"
ORIGIN = "https://portal.example.test"
H1, H2, H3 = (hashlib.sha256(bytes([i])).digest() for i in range(3))
H384 = hashlib.sha384(b"x").digest()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sad.sqlite"


@pytest.fixture
def mono() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def issuer(db: Path, mono: FakeMonotonic) -> Iterator[SadIssuer]:
    with SadIssuer(db, monotonic=mono) as i:
        yield i


def issue(issuer: SadIssuer, hashes: list[bytes] | None = None, **kwargs: object) -> str:
    hashes = [H1, H2] if hashes is None else hashes
    args: dict[str, object] = {"credential_id": CREDENTIAL, "hashes": hashes,
                               "origin": ORIGIN, "num_signatures": len(hashes), "now": T}
    args.update(kwargs)
    return issuer.issue(**args)  # type: ignore[arg-type]


def consume(issuer: SadIssuer, token: str, **kwargs: object) -> Grant:
    """The request the SAD of `issue` was made for, but for the fields in `kwargs`."""
    args: dict[str, object] = {"credential_id": CREDENTIAL, "origin": ORIGIN,
                               "hashes": [H1, H2], "now": T + 1}
    args.update(kwargs)
    return issuer.consume(token, **args)  # type: ignore[arg-type]


def refusal(issuer: SadIssuer, token: str, **kwargs: object) -> SadRefusal:
    with pytest.raises(SadInvalid) as refused:
        consume(issuer, token, **kwargs)
    return refused.value.reason


# Issue and consume ------------------------------------------------------------------------


def test_happy_path(issuer: SadIssuer) -> None:
    token = issue(issuer)
    assert len(base64.urlsafe_b64decode(token + "=")) == 32  # 256 bits
    grant = consume(issuer, token)
    assert grant.credential_id == CREDENTIAL and grant.origin == ORIGIN
    assert grant.hashes == (H1, H2) and grant.authorized == (H1, H2)
    assert grant.num_signatures == 2
    assert (grant.issued_at, grant.expires_at) == (T, T + MAX_TTL_SECONDS)
    assert len(grant.sad_id) == 16 and grant.sad_id not in token


def test_tokens_are_fresh(issuer: SadIssuer) -> None:
    assert len({issue(issuer) for _ in range(50)}) == 50


def test_replay_refused(issuer: SadIssuer) -> None:
    token = issue(issuer)
    consume(issuer, token)
    assert refusal(issuer, token) is SadRefusal.USED


def test_replay_refused_after_a_restart(db: Path, issuer: SadIssuer) -> None:
    token = issue(issuer)
    consume(issuer, token)
    issuer.close()
    with SadIssuer(db) as restarted:
        assert refusal(restarted, token) is SadRefusal.USED


def test_an_unused_sad_survives_a_restart(db: Path, issuer: SadIssuer) -> None:
    token = issue(issuer)
    issuer.close()
    with SadIssuer(db) as restarted:
        assert consume(restarted, token, now=T + 299).hashes == (H1, H2)
        assert refusal(restarted, token, now=T + 299) is SadRefusal.USED


_KILLED_AFTER_CONSUME = """
import os, signal, sys
from agent.policy import SadIssuer
issuer = SadIssuer(sys.argv[1])
issuer.consume(sys.argv[2], credential_id=sys.argv[3], origin=sys.argv[4],
               now=float(sys.argv[5]), hashes=[bytes.fromhex(h) for h in sys.argv[6:]])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_sad_consumed_just_before_kill_9_stays_used(db: Path, issuer: SadIssuer) -> None:
    token = issue(issuer)
    issuer.close()
    child = subprocess.run([sys.executable, "-c", _KILLED_AFTER_CONSUME, str(db), token,
                            CREDENTIAL, ORIGIN, repr(T + 1), H1.hex(), H2.hex()],
                           capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2], check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with SadIssuer(db) as restarted:
        assert refusal(restarted, token) is SadRefusal.USED


# Bindings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "reason"), [
    ({"origin": "https://evil.example.test"}, SadRefusal.ORIGIN),
    ({"origin": "https://portal.example.test:443"}, SadRefusal.ORIGIN),
    ({"origin": "https://Portal.example.test"}, SadRefusal.ORIGIN),
    ({"origin": "null"}, SadRefusal.ORIGIN),
    ({"credential_id": "9A"}, SadRefusal.CREDENTIAL),
    ({"hashes": [H3]}, SadRefusal.HASHES),
    ({"hashes": [H1, H3]}, SadRefusal.HASHES),
    ({"hashes": [H1, H1]}, SadRefusal.HASHES),
    ({"hashes": []}, SadRefusal.HASHES),
])
def test_a_binding_mismatch_refuses_and_ends_the_sad(
        issuer: SadIssuer, change: dict[str, object], reason: SadRefusal) -> None:
    token = issue(issuer)
    assert refusal(issuer, token, **change) is reason
    assert refusal(issuer, token) is SadRefusal.USED  # the right request comes too late


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "é" * 43, "A" * 10_000])
def test_unknown_or_malformed_tokens(issuer: SadIssuer, token: str) -> None:
    issue(issuer)
    assert refusal(issuer, token) is SadRefusal.UNKNOWN


def test_the_token_is_stored_hashed_and_never_logged(
        db: Path, issuer: SadIssuer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.policy")
    token = issue(issuer)
    consume(issuer, token)
    assert refusal(issuer, token) is SadRefusal.USED
    stored = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    assert token.encode() not in stored
    assert hashlib.sha256(token.encode()).digest() in stored
    assert token not in caplog.text and "granted" in caplog.text


# Expiry and clocks --------------------------------------------------------------------------


def test_expired_refused(issuer: SadIssuer) -> None:
    token = issue(issuer)
    assert refusal(issuer, token, now=T + MAX_TTL_SECONDS) is SadRefusal.EXPIRED
    short = issue(issuer, ttl_seconds=10)
    assert refusal(issuer, short, now=T + 10) is SadRefusal.EXPIRED


def test_valid_until_just_before_expiry(issuer: SadIssuer) -> None:
    consume(issuer, issue(issuer), now=T + MAX_TTL_SECONDS - 0.001)


@pytest.mark.parametrize("ttl", [MAX_TTL_SECONDS + 0.001, 301, 3600, 0, -1])
def test_ttl_outside_five_minutes_rejected_at_issue(issuer: SadIssuer, ttl: float) -> None:
    with pytest.raises(ValueError):
        issue(issuer, ttl_seconds=ttl)


def test_monotonic_clock_expires_a_sad_when_the_wall_clock_goes_back(
        issuer: SadIssuer, mono: FakeMonotonic) -> None:
    token = issue(issuer)
    mono.now += MAX_TTL_SECONDS
    assert refusal(issuer, token, now=T - 3600) is SadRefusal.EXPIRED


def test_clock_back_past_issue_after_restart_refused(db: Path, issuer: SadIssuer) -> None:
    token = issue(issuer)
    issuer.close()
    with SadIssuer(db) as restarted:  # no monotonic deadline: the age cannot be known
        assert refusal(restarted, token, now=T - 60) is SadRefusal.EXPIRED


def test_spent_rows_are_forgotten_a_day_after_expiry(issuer: SadIssuer) -> None:
    old = issue(issuer)
    consume(issuer, old)
    issue(issuer, now=T + 2 * 86400)
    assert refusal(issuer, old, now=T + 2 * 86400) is SadRefusal.UNKNOWN  # still refused


# Batches ------------------------------------------------------------------------------------


def test_any_subset_in_one_call_then_used(issuer: SadIssuer) -> None:
    token = issue(issuer, [H1, H2, H3])
    grant = consume(issuer, token, hashes=[H3, H1])
    assert grant.hashes == (H3, H1) and grant.authorized == (H1, H2, H3)
    assert refusal(issuer, token, hashes=[H2]) is SadRefusal.USED


def test_a_hash_listed_twice_may_be_signed_twice(issuer: SadIssuer) -> None:
    token = issue(issuer, [H1, H1, H384])
    assert consume(issuer, token, hashes=[H1, H384, H1]).hashes == (H1, H384, H1)


@pytest.mark.parametrize(("hashes", "num"), [
    ([], 0),
    ([H1, H2], 3),
    ([H1, H2], 1),
    ([b"\x00" * 20], 1),  # SHA-1 size
    ([b"\x00" * 31], 1),
    ([H1] * 1001, 1001),
])
def test_issue_checks_its_arguments(issuer: SadIssuer, hashes: list[bytes], num: int) -> None:
    with pytest.raises(ValueError):
        issue(issuer, hashes, num_signatures=num)


@pytest.mark.parametrize("change", [{"credential_id": ""}, {"origin": ""}])
def test_issue_needs_credential_and_origin(issuer: SadIssuer,
                                           change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        issue(issuer, None, **change)
