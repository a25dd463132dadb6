"""The first-time signer's enrolment calls (portal/API.md "First-time signer:
enrolment", `POST /api/s/{invite}/enrolment/{step}`): one handler per step, each parsing
its body and calling the enrolment desk (portal/enrolment.py, where the rules live).
A step answers the signer's view with its extra fields, or its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from portal import legal
from portal.enrolment import b64_spki
from portal.errors import Code, PortalError
from portal.routes.access import invite
from portal.routes.parse import certificate_and_chain, consent_records, phone, read_body, string
from portal.routes.state import Portal
from portal.routes.views import signer_view


@dataclass
class StepCall:
    portal: Portal
    signer_id: str
    generation: int  # a step that issues a new invitation link moves it on
    body: dict[str, Any]


# Extra fields for the signer's view, or an answer of the step's own.
StepAnswer = dict[str, Any] | web.Response
Step = Callable[[StepCall], Awaitable[StepAnswer]]


def _correct(body: dict[str, Any]) -> bool:
    correct = body.get("correct")
    if not isinstance(correct, bool):
        raise PortalError(Code.BAD_REQUEST, "correct: true or false")
    return correct


async def _start(call: StepCall) -> StepAnswer:
    await call.portal.enrolment.start(call.signer_id, call.generation)
    return {}


async def _personal_data(call: StepCall) -> StepAnswer:
    portal, body = call.portal, call.body
    correct = _correct(body)
    name = number = ""
    if not correct:
        name = string(body, "name")
        number = phone(body)
    new_generation = await portal.enrolment.personal_data(
        call.signer_id, call.generation, correct=correct, name=name, phone=number)
    if new_generation == call.generation:
        return {}
    call.generation = new_generation
    tx, signer = await asyncio.to_thread(portal.store.check_signer, call.signer_id,
                                         new_generation)
    extra = {"inviteUrl": portal.invite_url(tx, signer)}
    await portal.invite(tx, signer)
    if not tx.messaging:
        await portal.mail(tx.requester_email, "message", "en", name=signer.name,
                          title=tx.title,
                          text=f"Personal data corrected: {signer.name}, {signer.phone}")
    return extra


async def _consents(call: StepCall) -> StepAnswer:
    accepted = call.body.get("accepted")
    if not isinstance(accepted, list) or len(accepted) > len(legal.ENROLMENT_KINDS):
        raise PortalError(Code.BAD_REQUEST, "accepted: [{kind, version, sha256}]")
    await call.portal.enrolment.consents(call.signer_id, call.generation,
                                         consent_records(accepted))
    return {}


async def _identity(call: StepCall) -> StepAnswer:
    return {"identitySession": await call.portal.enrolment.open_identity(
        call.signer_id, call.generation, string(call.body, "document", max_len=20))}


async def _identity_done(call: StepCall) -> StepAnswer:
    _, signer = await asyncio.to_thread(call.portal.store.check_signer, call.signer_id,
                                        call.generation)
    await call.portal.enrolment.identity_done(call.signer_id, call.generation, signer)
    return {}


async def _identity_confirm(call: StepCall) -> StepAnswer:
    await call.portal.enrolment.confirm_identity(call.signer_id, call.generation,
                                                 _correct(call.body))
    return {}


async def _auth_data(call: StepCall) -> StepAnswer:
    number = phone(call.body)
    await call.portal.enrolment.auth_data(
        call.signer_id, call.generation, given_names=string(call.body, "givenNames"),
        surname=string(call.body, "surname"), phone=number)
    return {}


async def _otp(call: StepCall) -> StepAnswer:
    otp_id, sent = await call.portal.enrolment.send_token_code(
        call.signer_id, call.generation, string(call.body, "tokenID", max_len=128))
    return web.json_response({"otpSession": otp_id, "phoneMasked": sent.phone_masked,
                              "expiresIn": sent.expires_in})


async def _pin_set(call: StepCall) -> StepAnswer:
    await call.portal.enrolment.pin_set(call.signer_id, call.generation)
    return {}


async def _evidence(call: StepCall) -> StepAnswer:
    if call.body.get("accept") is not True:
        raise PortalError(Code.BAD_REQUEST, "accept: read and accept the certificate "
                          "request first")
    evidence = await call.portal.enrolment.evidence(call.signer_id, call.generation,
                                                    b64_spki(call.body))
    return web.json_response({"evidence": evidence})


async def _certificate(call: StepCall) -> StepAnswer:
    certificate, chain = certificate_and_chain(call.body)
    await call.portal.enrolment.certificate(
        call.signer_id, call.generation, certificate,
        await call.portal.desk.complete_chain(certificate, chain))
    return {}


STEPS: dict[str, Step] = {
    "start": _start,
    "personal-data": _personal_data,
    "consents": _consents,
    "identity": _identity,
    "identity-done": _identity_done,
    "identity-confirm": _identity_confirm,
    "auth-data": _auth_data,
    "otp": _otp,
    "pin-set": _pin_set,
    "evidence": _evidence,
    "certificate": _certificate,
}


async def signer_enrolment(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    name = request.match_info["step"]
    call = StepCall(portal, signer_id, generation, await read_body(request))
    step = STEPS.get(name)
    if step is None:
        raise PortalError(Code.NOT_FOUND, f"no enrolment step {name!r}")
    answer = await step(call)
    if isinstance(answer, web.Response):
        return answer
    view = await signer_view(portal, signer_id, call.generation)
    return web.json_response({**view, **answer})
