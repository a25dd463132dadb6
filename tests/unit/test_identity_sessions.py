"""Identity sessions written to a store and read back (issue 17): every field of a
session in the middle of liveness survives JSON, and a second service on the same
store continues it. No OCR: the document step's results are made by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from portal.identity import mrz, sessions
from portal.identity.evidence import EvidenceSigner, IssuedEvidence
from portal.identity.model import (
    Challenge,
    DocumentKind,
    IdentityPolicy,
    SideResult,
    Step,
    VerifiedIdentity,
)
from portal.identity.service import ReferenceIdentityService, _Session
from portal.identity.specimen import Side

NOW = dt.datetime(2026, 12, 4, 20, 0, tzinfo=dt.UTC)


def _session() -> _Session:
    lines = mrz.compose_td3(issuing_state="FRA", document_number="GK3511900",
                            birth_date=dt.date(1990, 5, 17), sex="F",
                            expiry_date=dt.date(2031, 1, 1), nationality="FRA",
                            surname="Martin", given_names="Léa")
    readings = mrz.readings((lines[0], "6" + lines[1][1:]), today=NOW.date())
    identity = VerifiedIdentity(DocumentKind.PASSPORT, "FRA", "GK3511900", ("MARTIN",),
                                ("LEA",), dt.date(1990, 5, 17), "F", "FRA",
                                dt.date(2031, 1, 1), True)
    challenge = Challenge("c1", "blink", None, "n1", NOW, NOW + dt.timedelta(seconds=20),
                          1, 3)
    return _Session(
        "s1", "signer-1", DocumentKind.PASSPORT, NOW, NOW + dt.timedelta(minutes=30),
        sides={Side.DATA_PAGE: SideResult(Side.DATA_PAGE, True, ("MARTIN", "LÉA"),
                                          readings[1], readings, (0.25, -0.5))},
        identity=identity, failures=2, liveness_attempts=1, challenges=[challenge],
        open_challenge=challenge, passed=1, frame_digests={b"\x00" * 32, b"\xff" * 32},
        evidence=IssuedEvidence("token", "e1", "ab" * 32, NOW))


def test_a_session_survives_json() -> None:
    session = _session()
    back = sessions.loads(_Session, sessions.dumps(session))
    assert back == session
    assert back.step is Step.LIVENESS
    assert back.sides[Side.DATA_PAGE].mrz == session.sides[Side.DATA_PAGE].mrz


def test_a_field_json_cannot_hold_is_refused() -> None:
    session = dataclasses.replace(_session(), signer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sessions.dumps(session)


def test_a_second_service_on_the_same_store_continues_the_session() -> None:
    store = sessions.MemorySessions()
    policy = IdentityPolicy(accept_specimens=True)
    first = ReferenceIdentityService(EvidenceSigner.generate(), policy, clock=lambda: NOW,
                                     sessions=store)
    opened = first.open_session("signer-1", DocumentKind.ID_CARD)
    second = ReferenceIdentityService(EvidenceSigner.generate(), policy,
                                      clock=lambda: NOW, sessions=store)
    assert second.session(opened.id) == opened
    late = ReferenceIdentityService(EvidenceSigner.generate(), policy,
                                    clock=lambda: NOW + dt.timedelta(hours=1), sessions=store)
    with pytest.raises(Exception, match="expired"):
        late.session(opened.id)
    assert store.load_identity_session(opened.id) is None


def test_a_session_written_meanwhile_is_not_overwritten() -> None:
    """Two caches on one store, as two portal processes: a call's copy of a session
    another call wrote since it was read is refused (SessionChanged), never written."""
    store = sessions.MemorySessions()
    one = sessions.SessionCache(store, _Session)
    two = sessions.SessionCache(store, _Session)
    with one:
        one.put(_session())
    with pytest.raises(sessions.SessionChanged), one:
        stale = one.get("s1")
        assert stale is not None
        stale.failures += 1
        with two:  # the other process counts a liveness attempt meanwhile
            other = two.get("s1")
            assert other is not None
            other.liveness_attempts += 1
    with two:
        now = two.get("s1")
        assert now is not None and (now.failures, now.liveness_attempts) == (2, 2)
    with one, pytest.raises(RuntimeError):  # a copy from an earlier call is not changed
        one.touch(stale)
