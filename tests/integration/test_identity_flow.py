"""The reference identity service with its real parts: SPECIMEN documents rendered in
OCR-B, read by Debian's tesseract, over HTTP on loopback; evidence verified by the CA.

OCR costs about a second a side, so documents are few and each test reads as few
sides as its point needs.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from ca import evidence as ca_evidence
from portal.identity.model import DocumentKind, IdentityError, Step
from portal.identity.mrz import DocumentFormat
from portal.identity.service import ReferenceIdentityService
from portal.identity.specimen import Defect, Side
from tests.support.identity_fixtures import (
    SettableClock,
    frames,
    identity_app,
    make_service,
    make_specimen,
    selfie,
)


@pytest.fixture(autouse=True, scope="module")
def _tesseract() -> None:
    if shutil.which("tesseract") is None:
        pytest.fail("tesseract is not installed (scripts/setup.sh installs tesseract-ocr)",
                    pytrace=False)


def _spki() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _code(call: Callable[..., Any], *args: Any, **kwargs: Any) -> IdentityError:
    with pytest.raises(IdentityError) as caught:
        call(*args, **kwargs)
    return caught.value


def _pass_liveness(service: ReferenceIdentityService, clock: SettableClock, sid: str) -> None:
    for _ in range(service.policy.challenges):
        challenge = service.next_challenge(sid)
        clock.advance(3)
        view = service.answer_challenge(sid, challenge.id, challenge.nonce,
                                        selfie(challenge.action))
    assert view.step is Step.VERIFIED


# The happy paths -------------------------------------------------------------------

def _run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())


def test_id_card_over_http_to_evidence_the_ca_accepts() -> None:
    service, clock = make_service()
    card = make_specimen(DocumentFormat.TD1, "FRA", "Dupont-Lefèvre", "Hélène Marie", seed=11)

    async def signer_of(request: web.Request) -> str:
        return request.headers["X-Test-Signer"]

    async def scenario() -> None:
        async with identity_app(service, mount="/api/identity/", signer_of=signer_of,
                                continue_url="https://portal.example.test/id/{session}"
                                ) as (http, base):
            async with http.post(f"{base}/sessions", json={"document": "id-card"},
                                 headers={"X-Test-Signer": "signer-7"}) as r:
                assert r.status == 201
                sid = (await r.json())["session"]
            # Front as multipart (a file input), back as a raw JPEG body (a camera).
            form = aiohttp.FormData()
            form.add_field("image", card.images[Side.FRONT], filename="front.png",
                           content_type="image/png")
            async with http.put(f"{base}/sessions/{sid}/sides/front", data=form) as r:
                body = await r.json()
                assert r.status == 200, body
                assert body["sides"] == ["front"] and body["step"] == "document"
            jpeg = io.BytesIO()
            Image.open(io.BytesIO(card.images[Side.BACK])).save(jpeg, "JPEG", quality=92)
            async with http.put(f"{base}/sessions/{sid}/sides/back", data=jpeg.getvalue(),
                                headers={"Content-Type": "image/jpeg"}) as r:
                body = await r.json()
                assert r.status == 200, body
                assert body["step"] == "liveness" and body["identity"] is None
            async with http.get(f"{base}/sessions/{sid}/identity") as r:
                assert (await r.json())["error"] == "WRONG_STEP"
            for index in range(1, 4):
                async with http.post(f"{base}/sessions/{sid}/challenges/next") as r:
                    challenge = await r.json()
                assert challenge["index"] == index and challenge["of"] == 3
                clock.advance(2.5)
                async with http.post(
                        f"{base}/sessions/{sid}/challenges/{challenge['id']}",
                        json={"nonce": challenge["nonce"], "frames": [
                            base64.b64encode(f).decode()
                            for f in selfie(challenge["action"])]}) as r:
                    body = await r.json()
                    assert r.status == 200, body
            assert body["step"] == "verified"
            async with http.get(f"{base}/sessions/{sid}/identity") as r:
                identity = await r.json()
            assert identity["surname"] == ["DUPONT", "LEFEVRE"]
            assert identity["givenNames"] == ["HELENE", "MARIE"]
            assert identity["documentNumber"] == card.data.document_number
            assert identity["birthDate"] == "1990-05-17"
            assert identity["nationality"] == "FRA" and identity["specimen"] is True
            spki = _spki()
            async with http.post(f"{base}/sessions/{sid}/evidence", json={
                    "publicKey": base64.b64encode(spki).decode(),
                    "givenNames": "Hélène", "surname": "Dupont-Lefèvre"}) as r:
                issued = await r.json()
                assert r.status == 200, issued
            async with http.get(f"{base}/sessions/{sid}/handoff") as r:
                handoff = await r.json()
            assert handoff["url"] == f"https://portal.example.test/id/{sid}"
            qr = Image.open(io.BytesIO(base64.b64decode(handoff["qrPng"])))
            assert qr.format == "PNG"
            async with http.get(f"{base}/sessions/nope/handoff.png") as r:
                assert r.status == 404
                assert (await r.json())["error"] == "IDENTITY_SESSION_UNKNOWN"
        trusted = [asn1_x509.Certificate.load(service.signer.certificate.public_bytes(
            serialization.Encoding.DER))]
        found = ca_evidence.verify(issued["evidence"], trusted, now=dt.datetime.now(dt.UTC))
        assert (found.person.given_name, found.person.surname) == ("Hélène", "Dupont-Lefèvre")
        assert found.person.serial_number == f"IDCFR-{card.data.document_number}"
        assert found.person.country == "FR"
        import hashlib
        assert found.spki_sha256 == hashlib.sha256(spki).hexdigest()

    _run(scenario)


@pytest.mark.parametrize(("country", "surname", "given", "sex"), [
    ("D", "Müller", "Jürgen Karl", "M"), ("NLD", "van der Berg", "Kees", "M"),
    ("ITA", "D'Angelo", "Maria Grazia", "F")])
def test_passports_round_trip(country: str, surname: str, given: str, sex: str) -> None:
    service, clock = make_service()
    page = make_specimen(DocumentFormat.TD3, country, surname, given, seed=3, sex=sex)
    sid = service.open_session("s", DocumentKind.PASSPORT).id
    view = service.submit_side(sid, Side.DATA_PAGE, page.images[Side.DATA_PAGE])
    assert view.step is Step.LIVENESS
    _pass_liveness(service, clock, sid)
    identity = service.identity(sid)
    expected = page.data
    assert identity.document_number == expected.document_number
    assert identity.birth_date == expected.birth_date
    assert identity.expiry_date == expected.expiry_date
    assert identity.sex == sex and identity.issuing_state == page.mrz_lines[0][2:5].rstrip("<")
    assert "<".join((*identity.surname, "", *identity.given_names)) in page.mrz_lines[0]
    # Evidence: names default to the document's; one key per session; same key, same token.
    spki = _spki()
    first = service.evidence(sid, spki)
    assert service.evidence(sid, spki) == first
    assert _code(service.evidence, sid, _spki()).code == "EVIDENCE_KEY_MISMATCH"


# Refusals ------------------------------------------------------------------------

@pytest.mark.parametrize(("defect", "code"), [(Defect.BAD_CHECK_DIGIT, "MRZ_CHECK_DIGIT"),
                                              (Defect.EXPIRED, "DOCUMENT_EXPIRED")])
def test_bad_check_digit_and_expired_documents(defect: Defect, code: str) -> None:
    service, _ = make_service()
    page = make_specimen(DocumentFormat.TD3, "FRA", "Martin", "Paul", defect=defect, seed=4)
    sid = service.open_session("s", DocumentKind.PASSPORT).id
    error = _code(service.submit_side, sid, Side.DATA_PAGE, page.images[Side.DATA_PAGE])
    assert error.code == code
    if defect is Defect.BAD_CHECK_DIGIT:
        assert error.extra["field"] == "birth_date"
    assert service.session(sid).sides == ()


def test_document_type_not_accepted_for_its_country() -> None:
    service, _ = make_service(accepted={"FRA": ["id-card"], "ITA": ["passport"]})
    page = make_specimen(DocumentFormat.TD3, "FRA", "Martin", "Paul", seed=6)
    sid = service.open_session("s", DocumentKind.PASSPORT).id
    error = _code(service.submit_side, sid, Side.DATA_PAGE, page.images[Side.DATA_PAGE])
    assert (error.code, error.extra["state"], error.extra["document"]) == (
        "DOCUMENT_NOT_ACCEPTED", "FRA", "passport")


def test_specimens_are_refused_by_a_production_policy() -> None:
    service, _ = make_service(accept_specimens=False)
    page = make_specimen(DocumentFormat.TD3, "FRA", "Martin", "Paul", seed=7)
    sid = service.open_session("s", DocumentKind.PASSPORT).id
    error = _code(service.submit_side, sid, Side.DATA_PAGE, page.images[Side.DATA_PAGE])
    assert error.code == "DOCUMENT_SPECIMEN"


def test_front_and_back_of_different_cards() -> None:
    service, _ = make_service()
    card = make_specimen(DocumentFormat.TD1, "FRA", "Martin", "Léa",
                         defect=Defect.MISMATCHED_SIDES, seed=8)
    sid = service.open_session("s", DocumentKind.ID_CARD).id
    service.submit_side(sid, Side.FRONT, card.images[Side.FRONT])  # each side alone is fine
    error = _code(service.submit_side, sid, Side.BACK, card.images[Side.BACK])
    assert (error.code, error.extra["field"]) == ("SIDES_MISMATCH", "document_number")
    assert service.session(sid).sides == ()  # both sides are captured again


def test_liveness_refusals() -> None:
    """Late, early, unbound and replayed answers on one verified passport."""
    service, clock = make_service(liveness_attempts=10, challenges=2)
    page = make_specimen(DocumentFormat.TD3, "ESP", "García Pérez", "José", seed=9, sex="M")
    sid = service.open_session("s", DocumentKind.PASSPORT).id
    service.submit_side(sid, Side.DATA_PAGE, page.images[Side.DATA_PAGE])

    challenge = service.next_challenge(sid)
    assert service.next_challenge(sid) == challenge  # the open one, until answered
    clock.advance(service.policy.challenge_seconds + 0.5)
    late = _code(service.answer_challenge, sid, challenge.id, challenge.nonce, frames())
    assert late.code == "CHALLENGE_LATE"
    # The series starts again from its first challenge, with new ids.
    again = service.next_challenge(sid)
    assert again.index == 1 and again.id != challenge.id
    assert _code(service.answer_challenge, sid, again.id, again.nonce,
                 frames()).code == "CHALLENGE_TOO_EARLY"
    fresh = service.next_challenge(sid)
    clock.advance(2)
    assert _code(service.answer_challenge, sid, fresh.id, "another nonce",
                 frames()).code == "CHALLENGE_BINDING"
    assert _code(service.answer_challenge, sid, "not-the-open-one", "x",
                 frames()).code == "CHALLENGE_UNKNOWN"
    one = service.next_challenge(sid)
    clock.advance(2)
    sent = selfie(one.action)
    service.answer_challenge(sid, one.id, one.nonce, sent)
    two = service.next_challenge(sid)
    clock.advance(2)
    assert _code(service.answer_challenge, sid, two.id, two.nonce,
                 [sent[0], *selfie(two.action)[1:]]).code == "FRAMES_REPLAYED"
    three = service.next_challenge(sid)
    clock.advance(2)
    same = frames(2)
    assert _code(service.answer_challenge, sid, three.id, three.nonce,
                 same + same).code == "FRAMES_INVALID"
    four = service.next_challenge(sid)
    clock.advance(2)
    assert _code(service.answer_challenge, sid, four.id, four.nonce,
                 frames(3) + frames(1, size=(640, 480))).code == "FRAMES_INVALID"
    five = service.next_challenge(sid)
    clock.advance(2)
    assert _code(service.answer_challenge, sid, five.id, five.nonce,
                 [b"not an image", *frames(3)]).code == "FRAMES_INVALID"
    # A challenge left to lapse counts as answered late: a new series.
    six = service.next_challenge(sid)
    clock.advance(service.policy.challenge_seconds + 1)
    assert service.next_challenge(sid).index == 1 and six.index in (1, 2)
    _pass_liveness(service, clock, sid)
    identity = service.identity(sid)
    assert identity.surname == ("GARCIA", "PEREZ")
    # Names for the certificate must come from the document.
    assert _code(service.evidence, sid, _spki(), given_names="Pedro").code == "NAME_INVALID"
    issued = service.evidence(sid, _spki(), given_names="José", surname="García Pérez")
    assert issued.token.count(".") == 2
