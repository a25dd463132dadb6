"""The identity service's sessions and inputs, where no OCR is needed: every entry
point refuses bad input with a typed code; sessions expire and lock."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.identity.model import DocumentKind, IdentityError, IdentityPolicy, Step
from portal.identity.service import ReferenceIdentityService
from portal.identity.specimen import Side
from tests.support.identity_fixtures import frames, make_service


def _code(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(IdentityError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.code


def test_open_session() -> None:
    service, _ = make_service()
    view = service.open_session("signer-1", DocumentKind.ID_CARD)
    assert view.step is Step.DOCUMENT and view.sides == () and view.identity is None
    assert len(view.id) >= 43  # 256 bits, base64url
    assert view.as_json()["required"] == ["front", "back"]
    assert service.session(view.id) == view
    passport = service.open_session("signer-1", DocumentKind.PASSPORT)
    assert passport.as_json()["required"] == ["data-page"]
    assert _code(service.open_session, "signer 1", "id-card") == "BAD_REQUEST"
    assert _code(service.open_session, "s", "driving-licence") == "BAD_REQUEST"
    assert _code(service.session, "nope") == "IDENTITY_SESSION_UNKNOWN"


def test_sessions_expire() -> None:
    service, clock = make_service(session_minutes=30)
    view = service.open_session("s", DocumentKind.PASSPORT)
    clock.advance(30 * 60 + 1)
    assert _code(service.session, view.id) == "IDENTITY_SESSION_EXPIRED"
    assert _code(service.session, view.id) == "IDENTITY_SESSION_UNKNOWN"


def test_sides_must_belong_to_the_document() -> None:
    service, _ = make_service()
    view = service.open_session("s", DocumentKind.PASSPORT)
    assert _code(service.submit_side, view.id, Side.FRONT, b"\x89PNG") == "BAD_REQUEST"
    assert _code(service.submit_side, view.id, "left", b"\x89PNG") == "BAD_REQUEST"


def test_images_are_checked_before_any_ocr() -> None:
    service, _ = make_service(max_image_bytes=1000, max_document_failures=50)
    view = service.open_session("s", DocumentKind.PASSPORT)
    assert _code(service.submit_side, view.id, Side.DATA_PAGE, b"x" * 1001) == (
        "PAYLOAD_TOO_LARGE")
    for bad in (b"GIF89a....", b"\x89PNG\r\n\x1a\nbroken", b"\xff\xd8\xffnot a jpeg", b""):
        assert _code(service.submit_side, view.id, Side.DATA_PAGE, bad) == "IMAGE_INVALID"


def test_too_many_failures_lock_the_session() -> None:
    service, _ = make_service(max_document_failures=3)
    view = service.open_session("s", DocumentKind.PASSPORT)
    for _ in range(2):
        assert _code(service.submit_side, view.id, Side.DATA_PAGE, b"junk") == "IMAGE_INVALID"
    with pytest.raises(IdentityError) as caught:
        service.submit_side(view.id, Side.DATA_PAGE, b"junk")
    assert caught.value.extra.get("locked") is True
    assert _code(service.session, view.id) == "IDENTITY_LOCKED"


def test_steps_are_in_order() -> None:
    service, _ = make_service()
    view = service.open_session("s", DocumentKind.ID_CARD)
    assert _code(service.next_challenge, view.id) == "WRONG_STEP"
    assert _code(service.answer_challenge, view.id, "c", "n", frames(2)) == "WRONG_STEP"
    assert _code(service.identity, view.id) == "WRONG_STEP"
    assert _code(service.evidence, view.id, b"\x30") == "WRONG_STEP"


def test_policy_from_mapping() -> None:
    policy = IdentityPolicy.from_mapping({"accepted": {"FRA": ["id-card"], "DEU": ["passport"]},
                                          "challenges": 2})
    assert policy.accepts("FRA", DocumentKind.ID_CARD)
    assert not policy.accepts("FRA", DocumentKind.PASSPORT)
    assert policy.accepts("D", DocumentKind.PASSPORT)  # the MRZ writes Germany as D
    assert not policy.accepts("ITA", DocumentKind.ID_CARD)
    for bad in ({"acepted": {}}, {"accepted": {"XXX": ["passport"]}},
                {"accepted": {"FRA": ["visa"]}}, {"accepted": ["FRA"]}):
        with pytest.raises(ValueError):
            IdentityPolicy.from_mapping(bad)
    default = IdentityPolicy()
    assert default.accept_specimens is False
    assert default.accepts("FRA", DocumentKind.ID_CARD)
    assert default.accepts("GBR", DocumentKind.PASSPORT)
    assert not default.accepts("GBR", DocumentKind.ID_CARD)
    assert not default.accepts("UTO", DocumentKind.PASSPORT)


def test_a_service_needs_no_more_than_its_key() -> None:
    from portal.identity.evidence import EvidenceSigner

    service = ReferenceIdentityService(EvidenceSigner.generate())
    view = service.open_session("s", DocumentKind.ID_CARD)
    assert view.expires_at > dt.datetime.now(dt.UTC)
