"""Every JSON route's body has one JSON Schema, checked where the body is read (issue 14):
a field of the wrong type, a required field left out, or a field the schema does not know
(every body is closed: `additionalProperties: false`) is a typed 400, BAD_REQUEST, whose
`field` and `rule` name what broke and whose message says it, without ever echoing the
value; nothing behind the route runs. Walked over the real portal app on a loopback port
(the mounted identity service included); the identity service's two routes the portal
does not mount (opening a session, evidence), over the identity app on loopback."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from portal.identity.model import DocumentKind
from tests.support.identity_fixtures import identity_app, make_service
from tests.support.pdfs import blank_pdf
from tests.support.portal_service import RunningPortal, running_portal

SECRET = "SECRET-7f3a9c"  # a wrong value never comes back in the answer
NUMBER = 918273645
DIGEST = base64.b64encode(bytes(32)).decode()
STEP = list[str | int]


@dataclass(frozen=True)
class Bad:
    """`valid` changed at `at`: set to `value`, or dropped when `value` is DROP."""
    at: STEP
    value: Any
    field: str
    rule: str


DROP = object()


def wrong(at: STEP, field: str, value: Any = SECRET) -> Bad:
    return Bad(at, value, field, "type")


def missing(at: STEP, field: str) -> Bad:
    return Bad(at, DROP, field, "required")


def unknown(at: STEP, field: str) -> Bad:
    return Bad(at, SECRET, field, "additionalProperties")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    who: str  # "requester", "agent" or "page" (the invitation or space link is the path)
    valid: dict[str, Any]
    bad: tuple[Bad, ...]


def _changed(valid: dict[str, Any], bad: Bad) -> dict[str, Any]:
    body = copy.deepcopy(valid)
    node: Any = body
    for step in bad.at[:-1]:
        node = node[step]
    if bad.value is DROP:
        del node[bad.at[-1]]
    else:
        node[bad.at[-1]] = bad.value
    return body


async def _refused(http: aiohttp.ClientSession, url: str, route: Route,
                   headers: dict[str, str]) -> None:
    for bad in route.bad:
        body = _changed(route.valid, bad)
        async with http.request(route.method, url, json=body, headers=headers) as response:
            raw = await response.text()
            status = response.status
        answer = json.loads(raw)
        where = (route.method, route.path, bad.field, answer)
        assert status == 400 and answer["error"] == "BAD_REQUEST", where
        assert (answer.get("field"), answer.get("rule")) == (bad.field, bad.rule), where
        assert answer["message"].startswith(f"{bad.field}: "), where
        assert SECRET not in raw and str(NUMBER) not in raw, where


def _consents(kinds: tuple[str, str]) -> dict[str, Any]:
    return {"accepted": [{"kind": kind, "version": "2026.1", "sha256": "0" * 64}
                         for kind in kinds]}


def _portal_routes(tx_id: str, invite: str, space: str, identity: str) -> list[Route]:
    s, me, ident = f"/api/s/{invite}", f"/api/me/{space}", f"/api/identity/sessions/{identity}"
    transaction = {"title": "Schemas", "requester": {"name": "Agence",
                                                     "email": "agence@example.test"},
                   "documents": [{"name": "a.pdf",
                                  "content": base64.b64encode(blank_pdf()).decode()}],
                   "signers": [{"email": "new@example.test"}], "level": "B-B"}
    text = (wrong(["text"], "text", NUMBER), missing(["text"], "text"),
            unknown(["cc"], "cc"))
    certificate = {"certificate": "AAAA", "chain": []}
    nothing = (unknown(["step"], "step"),)  # no field to mistype or leave out
    return [
        Route("POST", "/api/v1/transactions", "requester", transaction, (
            wrong(["expiresInDays"], "expiresInDays"),
            missing(["requester", "email"], "requester.email"),
            unknown(["signers", 0, "role"], "signers[0].role"))),
        Route("POST", f"/api/v1/transactions/{tx_id}/messages", "requester", {"text": "hi"},
              text),
        Route("POST", "/api/v1/sms-otp/send", "agent", {"session": "s", "hashes": [DIGEST]},
              (wrong(["hashes"], "hashes"), missing(["session"], "session"),
               unknown(["phone"], "phone"))),
        Route("POST", "/api/v1/sms-otp/verify", "agent",
              {"session": "s", "code": "123456", "hashes": [DIGEST]},
              (wrong(["code"], "code", NUMBER), missing(["hashes"], "hashes"),
               unknown(["tokenID"], "tokenID"))),
        Route("POST", f"{s}/consents", "page", _consents(("privacy", "terms")), (
            wrong(["accepted", 0, "version"], "accepted[0].version", NUMBER),
            missing(["accepted", 1, "sha256"], "accepted[1].sha256"),
            unknown(["accepted", 0, "lang"], "accepted[0].lang"))),
        Route("POST", f"{s}/refuse", "page", {"reason": "no"}, (
            wrong(["reason"], "reason", [SECRET]), missing(["reason"], "reason"),
            unknown(["notify"], "notify"))),
        Route("POST", f"{s}/messages", "page", {"text": "hi"}, text),
        Route("POST", f"{s}/certificates/check", "page", certificate, (
            wrong(["chain"], "chain"), missing(["certificate"], "certificate"),
            unknown(["label"], "label"))),
        Route("POST", f"{s}/sign/prepare", "page", {**certificate, "phoneConfirmed": True}, (
            wrong(["phoneConfirmed"], "phoneConfirmed"),
            missing(["phoneConfirmed"], "phoneConfirmed"), unknown(["phone"], "phone"))),
        Route("POST", f"{s}/sign/complete", "page", {"sessionId": "s", "signatures": ["AA=="]}, (
            wrong(["signatures", 0], "signatures[0]", NUMBER),
            missing(["sessionId"], "sessionId"), unknown(["hashes"], "hashes"))),
        Route("POST", f"{s}/enrolment/start", "page", {}, nothing),
        Route("POST", f"{s}/enrolment/personal-data", "page",
              {"correct": False, "name": "Marie Curie", "phone": "+33612345678"}, (
                  wrong(["correct"], "correct"),
                  missing(["phone"], "phone"),  # a correction names both
                  unknown(["email"], "email"))),
        Route("POST", f"{s}/enrolment/consents", "page", _consents(("issuance", "space")), (
            wrong(["accepted"], "accepted"), missing(["accepted", 0, "kind"], "accepted[0].kind"),
            unknown(["all"], "all"))),
        Route("POST", f"{s}/enrolment/identity", "page", {"document": "id-card"}, (
            wrong(["document"], "document", NUMBER), missing(["document"], "document"),
            unknown(["country"], "country"))),
        Route("POST", f"{s}/enrolment/identity-done", "page", {}, nothing),
        Route("POST", f"{s}/enrolment/identity-confirm", "page", {"correct": True}, (
            wrong(["correct"], "correct"), missing(["correct"], "correct"),
            unknown(["differences"], "differences"))),
        Route("POST", f"{s}/enrolment/auth-data", "page",
              {"givenNames": "Marie", "surname": "Curie", "phone": "+33612345678"}, (
                  wrong(["phone"], "phone", NUMBER), missing(["surname"], "surname"),
                  unknown(["birthDate"], "birthDate"))),
        Route("POST", f"{s}/enrolment/otp", "page", {"tokenID": "piv-1"}, (
            wrong(["tokenID"], "tokenID", NUMBER), missing(["tokenID"], "tokenID"),
            unknown(["phone"], "phone"))),
        Route("POST", f"{s}/enrolment/pin-set", "page", {}, nothing),
        Route("POST", f"{s}/enrolment/evidence", "page", {"publicKey": "AAAA", "accept": True}, (
            wrong(["accept"], "accept"), missing(["publicKey"], "publicKey"),
            unknown(["keyID"], "keyID"))),
        Route("POST", f"{s}/enrolment/certificate", "page",
              {"certificate": "AAAA", "chain": ["AAAA"]}, (
                  wrong(["chain", 0], "chain[0]", NUMBER),
                  missing(["certificate"], "certificate"), unknown(["serial"], "serial"))),
        Route("POST", f"{me}/session", "page", {"otpSession": "o", "code": "123456"}, (
            wrong(["code"], "code", NUMBER), missing(["otpSession"], "otpSession"),
            unknown(["email"], "email"))),
        Route("PUT", f"{ident}/sides/front", "page", {"image": "AAAA"}, (
            wrong(["image"], "image", NUMBER), missing(["image"], "image"),
            unknown(["side"], "side"))),
        Route("POST", f"{ident}/challenges/c1", "page", {"nonce": "n", "frames": []}, (
            wrong(["frames"], "frames"), missing(["nonce"], "nonce"),
            unknown(["action"], "action"))),
    ]


def _headers(portal: RunningPortal, who: str) -> dict[str, str]:
    if who == "requester":
        return portal.auth()
    if who == "agent":
        return {"Authorization": f"Bearer {portal.agent_token}"}
    return {}


def test_every_portal_json_route_refuses_a_body_outside_its_schema(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path) as portal:
            scene = await portal.signer_at_documents()
            tx, invite = scene.tx, scene.invite
            sms, mails = portal.store.sms(), portal.store.mails()
            routes = _portal_routes(tx["id"], invite, scene.space, scene.identity)
            for route in routes:
                await _refused(portal.session, portal.url + route.path, route,
                               _headers(portal, route.who))
            # Nothing behind any route ran.
            listed = await portal.call("GET", "/api/v1/transactions", auth=True)
            assert [t["id"] for t in listed["transactions"]] == [tx["id"]]
            view = await portal.call("GET", f"/api/s/{invite}")
            assert view["step"] == "documents" and view["signer"]["refusalReason"] is None
            assert await portal.call("GET", f"/api/s/{invite}/messages") == {"messages": []}
            assert (portal.store.sms(), portal.store.mails()) == (sms, mails)
            # Each valid body gets past its schema: it is refused for other reasons, if at all.
            for route in routes:
                async with portal.session.request(
                        route.method, portal.url + route.path, json=route.valid,
                        headers=_headers(portal, route.who)) as response:
                    answer = await response.json()
                    assert "rule" not in answer, (route.path, answer)

    asyncio.run(main())


def test_the_identity_services_own_routes_refuse_a_body_outside_their_schema() -> None:
    service, _ = make_service()
    sid = service.open_session("signer-1", DocumentKind.ID_CARD).id

    async def main() -> None:
        async with identity_app(service) as (http, base):
            for route in (
                    Route("POST", "/sessions", "page", {"document": "id-card"}, (
                        wrong(["document"], "document", NUMBER),
                        missing(["document"], "document"),
                        unknown(["signer"], "signer"))),
                    Route("POST", f"/sessions/{sid}/evidence", "page",
                          {"publicKey": "AAAA", "givenNames": "Marie"}, (
                              wrong(["givenNames"], "givenNames", NUMBER),
                              missing(["publicKey"], "publicKey"),
                              unknown(["keyID"], "keyID")))):
                await _refused(http, base + route.path, route, {})

    asyncio.run(main())
