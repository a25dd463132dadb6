"""A hostile card: whatever it answers, the token layer raises a typed TokenError
(or succeeds), never anything else (cf. OpenSC CVE-2018-16391..16427)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.tokens.errors import TokenError
from agent.tokens.model import KeyType, SignatureAlgorithm
from agent.tokens.piv import PivSession, PivToken
from ground.iso7816 import tlv

SW = st.one_of(
    st.sampled_from([0x9000, 0x6100, 0x61FF, 0x6110, 0x63C0, 0x63C2, 0x6983, 0x6982, 0x6A80,
                     0x6A82, 0x6A88, 0x6D00, 0x6700, 0x6F00]),
    st.integers(0, 0xFFFF),
)
TLV_ISH = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda tag, body: tlv(tag, body), st.sampled_from(
        [0x53, 0x61, 0x7C, 0x7F49, 0x70, 0x7E, 0x82, 0x86, 0x81]), st.binary(max_size=200)),
    st.builds(lambda inner: tlv(0x7C, tlv(0x82, inner)), st.binary(max_size=80)),
    st.builds(lambda inner: tlv(0x53, tlv(0x70, inner) + tlv(0x71, b"\x00")),
              st.binary(max_size=120)),
)
RESPONSES = st.lists(st.tuples(TLV_ISH, SW), min_size=1, max_size=40)


class ReplayCard:
    """A `Connection` that answers from a script, then 6F00 forever (bounded by a budget)."""

    def __init__(self, script: list[tuple[bytes, int]]) -> None:
        self.script = list(script)
        self.calls = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.calls += 1
        if self.calls > 500:
            raise AssertionError("the host keeps sending: an unbounded loop")
        return self.script.pop(0) if self.script else (b"", 0x6F00)


def _operations() -> list[Callable[[PivToken], object]]:
    digest = hashlib.sha256(b"x").digest()
    return [
        lambda t: t.credentials(),
        lambda t: t.pin_status(),
        lambda t: t.verify_pin("123456"),
        lambda t: t.sign_digest("9A", digest, SignatureAlgorithm.parse("ECDSA_SHA256"), "123456"),
        lambda t: t.generate_key("9C", KeyType.EC_P256),
        lambda t: t.generate_key("9D", KeyType.RSA_2048),
        lambda t: t.attest("9C"),
        lambda t: t.change_pin("123456", "654321"),
        lambda t: t.unblock_pin("12345678", "123456"),
    ]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=RESPONSES, operation=st.integers(0, len(_operations()) - 1))
def test_hostile_responses_give_typed_errors(script: list[tuple[bytes, int]],
                                             operation: int) -> None:
    select_ok = (tlv(0x61, tlv(0x4F, b"\x00\x00\x10\x00\x01\x00")), 0x9000)
    card = ReplayCard([select_ok, (b"", 0x6D00), (b"", 0x6D00), (b"", 0x6A82), *script])
    token = PivToken(card)
    with contextlib.suppress(TokenError):  # typed refusals are the point; others fail
        _operations()[operation](token)


@settings(max_examples=2000, deadline=None)
@given(script=RESPONSES)
def test_hostile_responses_during_discovery(script: list[tuple[bytes, int]]) -> None:
    with contextlib.suppress(TokenError):
        PivToken(ReplayCard(script))


@settings(max_examples=1000, deadline=None)
@given(script=RESPONSES, tag=st.sampled_from([0x5FC102, 0x5FC105, 0x5FFF01, 0x7E]))
def test_hostile_get_data(script: list[tuple[bytes, int]], tag: int) -> None:
    session = PivSession(ReplayCard(script))
    with contextlib.suppress(TokenError):
        session.get_data(tag)
        session.get_metadata(0x9A)
        session.get_serial()


def test_no_pin_in_any_log_record(connection: object, caplog: pytest.LogCaptureFixture) -> None:
    """A distinctive PIN never reaches a log at any level, nor its APDU hex."""
    caplog.set_level(1)
    token = PivToken(connection)  # type: ignore[arg-type]
    token.generate_key("9C", KeyType.EC_P256)
    pin, new_pin = "123456", "48291375"
    digest = hashlib.sha256(b"doc").digest()
    token.verify_pin(pin)
    token.sign_digest("9C", digest, SignatureAlgorithm.parse("ECDSA_SHA256"), pin=pin)
    token.change_pin(pin, new_pin)
    with pytest.raises(TokenError):
        token.verify_pin("99999999")
    token.verify_pin(new_pin)
    token.unblock_pin("12345678", pin)
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert any(r.levelno < logging.DEBUG for r in caplog.records), "TRAFFIC traces were on"
    for secret in (pin, new_pin, "12345678", "99999999"):
        assert secret not in logged
        assert secret.encode().hex() not in logged
