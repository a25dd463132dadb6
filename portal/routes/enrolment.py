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
from portal.body_schema import BodySchema, Schema, closed, openapi_component, text
from portal.enrolment import b64_spki
from portal.errors import Code, PortalError
from portal.identity.http import DOCUMENT
from portal.routes.access import invite
from portal.routes.parse import (
    CERTIFICATE_FIELDS,
    accepted_texts,
    certificate_and_chain,
    consent_records,
    e164,
    read_body,
)
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


async def _start(call: StepCall) -> StepAnswer:
    await call.portal.enrolment.start(call.signer_id, call.generation)
    return {}


async def _personal_data(call: StepCall) -> StepAnswer:
    portal, fields = call.portal, call.body
    correct, name, number = fields["correct"], "", ""
    if not correct:
        name, number = fields["name"].strip(), e164(fields["phone"])
    _, before = await asyncio.to_thread(portal.store.check_signer, call.signer_id,
                                        call.generation)
    new_generation = await portal.enrolment.personal_data(
        call.signer_id, call.generation, correct=correct, name=name, phone=number)
    if new_generation == call.generation:
        return {}
    call.generation = new_generation
    tx, signer = await asyncio.to_thread(portal.store.check_signer, call.signer_id,
                                         new_generation)
    extra = {"inviteUrl": portal.invite_url(tx, signer)}
    await portal.invite(tx, signer, replaces=True)
    # The thread has it when messaging is on (the store posts it); the mail either way.
    if portal.notify_requester_on_correction(tx):
        await portal.mail_requester(
            tx, "corrected", requester=tx.requester_name, name=signer.name, title=tx.title,
            old_name=before.name or "-", new_name=signer.name,
            old_phone=before.phone or "-", new_phone=signer.phone or "-",
            url=portal.transaction_url(tx))
    return extra


async def _consents(call: StepCall) -> StepAnswer:
    await call.portal.enrolment.consents(call.signer_id, call.generation,
                                         consent_records(call.body["accepted"]))
    return {}


async def _identity(call: StepCall) -> StepAnswer:
    return {"identitySession": await call.portal.enrolment.open_identity(
        call.signer_id, call.generation, call.body["document"])}


async def _identity_done(call: StepCall) -> StepAnswer:
    _, signer = await asyncio.to_thread(call.portal.store.check_signer, call.signer_id,
                                        call.generation)
    await call.portal.enrolment.identity_done(call.signer_id, call.generation, signer)
    return {}


async def _identity_confirm(call: StepCall) -> StepAnswer:
    await call.portal.enrolment.confirm_identity(call.signer_id, call.generation,
                                                 call.body["correct"])
    return {}


async def _auth_data(call: StepCall) -> StepAnswer:
    fields = call.body
    await call.portal.enrolment.auth_data(
        call.signer_id, call.generation, given_names=fields["givenNames"].strip(),
        surname=fields["surname"].strip(), phone=e164(fields["phone"]))
    return {}


async def _otp(call: StepCall) -> StepAnswer:
    otp_id, sent = await call.portal.enrolment.send_token_code(
        call.signer_id, call.generation, call.body["tokenID"].strip())
    return web.json_response({"otpSession": otp_id, "phoneMasked": sent.phone_masked,
                              "expiresIn": sent.expires_in})


async def _pin_set(call: StepCall) -> StepAnswer:
    await call.portal.enrolment.pin_set(call.signer_id, call.generation)
    return {}


async def _evidence(call: StepCall) -> StepAnswer:
    evidence = await call.portal.enrolment.evidence(call.signer_id, call.generation,
                                                    b64_spki(call.body))
    return web.json_response({"evidence": evidence})


async def _certificate(call: StepCall) -> StepAnswer:
    certificate, chain = certificate_and_chain(call.body)
    await call.portal.enrolment.certificate(
        call.signer_id, call.generation, certificate,
        await call.portal.desk.complete_chain(certificate, chain))
    return {}


PHONE = openapi_component("Phone")  # as the requester gives signers' numbers
CORRECT: Schema = {"type": "boolean"}
NOTHING = BodySchema(closed({}))
PERSONAL_DATA = BodySchema(closed(
    {"correct": CORRECT, "name": text(200), "phone": PHONE}, required=["correct"],
    **{"if": {"properties": {"correct": {"const": False}}, "required": ["correct"]},
       "then": {"required": ["name", "phone"]}}))  # a correction names both
CONSENTS = BodySchema(closed({"accepted": accepted_texts(legal.ENROLMENT_KINDS)},
                             required=["accepted"]))
IDENTITY = BodySchema(closed({"document": DOCUMENT}, required=["document"]))
IDENTITY_CONFIRM = BodySchema(closed({"correct": CORRECT}, required=["correct"]))
AUTH_DATA = BodySchema(closed(
    {"givenNames": text(200), "surname": text(200), "phone": PHONE},
    required=["givenNames", "surname", "phone"]))
TOKEN_CODE = BodySchema(closed({"tokenID": text(128)}, required=["tokenID"]))
EVIDENCE = BodySchema(closed({
    "publicKey": {"type": "string", "maxLength": 4096, "contentEncoding": "base64"},
    "accept": {"type": "boolean", "const": True,
               "description": "read and accept the certificate request first"},
}, required=["publicKey", "accept"]))
CERTIFICATE = BodySchema(closed(CERTIFICATE_FIELDS, required=["certificate"]))

# Each step's body schema (portal/API.md "First-time signer: enrolment") and handler.
STEPS: dict[str, tuple[BodySchema, Step]] = {
    "start": (NOTHING, _start),
    "personal-data": (PERSONAL_DATA, _personal_data),
    "consents": (CONSENTS, _consents),
    "identity": (IDENTITY, _identity),
    "identity-done": (NOTHING, _identity_done),
    "identity-confirm": (IDENTITY_CONFIRM, _identity_confirm),
    "auth-data": (AUTH_DATA, _auth_data),
    "otp": (TOKEN_CODE, _otp),
    "pin-set": (NOTHING, _pin_set),
    "evidence": (EVIDENCE, _evidence),
    "certificate": (CERTIFICATE, _certificate),
}


async def signer_enrolment(request: web.Request) -> web.Response:
    portal, signer_id, generation = invite(request)
    name = request.match_info["step"]
    if name not in STEPS:
        raise PortalError(Code.NOT_FOUND, f"no enrolment step {name!r}")
    schema, step = STEPS[name]
    call = StepCall(portal, signer_id, generation, await read_body(request, schema))
    answer = await step(call)
    if isinstance(answer, web.Response):
        return answer
    view = await signer_view(portal, signer_id, call.generation)
    return web.json_response({**view, **answer})
