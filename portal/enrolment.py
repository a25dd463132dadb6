"""A first-time signer's enrolment, the portal's side (portal/API.md "First-time signer").

Between the signature service's consents and the documents:
  personal-data -> issuance-consents -> identity -> identity-confirm -> auth-data
  -> pin -> certificate -> done
The identity is read from the document by the identity provider (portal/identity), never
from a form; the PIN is set on the token by the page through the agent and never comes
here; the key is made on the token and the CA issues the certificate to the agent. The
portal gives the identity evidence for the token's key and keeps the certificate for
Personal Space. Each step is one database transaction that checks the step it expects,
so a retried or out-of-order call gets the state it needs or a typed error.

Presenting the PIN or PUK to the card (pin/change, pin/unblock, enroll/generate) needs a
second factor first (SECURITY #35); a first-time signer has none yet, so the portal texts
a code to the phone chosen at auth-data, bound to the token (qsign/binding.py), and the
agent spends it once for a 5-minute grant on that token (`secondFactor/verify`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from asn1crypto import keys as asn1_keys
from asn1crypto import x509

from ground.binding import token_management_hash
from portal import accepted_documents, legal
from portal.errors import Code, PortalError
from portal.identity import countries, names
from portal.identity.model import DocumentKind, IdentityError, IdentityProvider, Step
from portal.otp import RESEND_AFTER, Sent, SmsOtp
from portal.store import Enrolment, EnrolmentStep, Signer, Store
from portal.translations import N_, translate

log = logging.getLogger(__name__)

_IDENTITY_CODES = {"IDENTITY_SESSION_UNKNOWN": Code.SESSION_UNKNOWN,
                   "IDENTITY_SESSION_EXPIRED": Code.LINK_EXPIRED,
                   "EVIDENCE_KEY_MISMATCH": Code.KEY_MISMATCH,
                   "NAME_INVALID": Code.NAME_NOT_ON_DOCUMENT,
                   "WRONG_STEP": Code.IDENTITY_NOT_VERIFIED,
                   "IDENTITY_SESSION_CHANGED": Code.CONFLICT}


# OtpSession.purpose of a code that opens one token's PIN/PUK and key management.
CODE_PURPOSE = "enrol-token"
# The steps whose page presents the PIN or PUK: pin/change, pin/unblock, enroll/generate.
CODE_STEPS = (EnrolmentStep.PIN, EnrolmentStep.CERTIFICATE)
_CODE_TEXT = N_("qsign: {code} is your code to set up your token (PIN and key) for your "
                "qualified certificate. Valid 5 minutes. Never share it.")


def token_hashes(token_id: str) -> list[str]:
    """The one 'hash' a token-management code is bound to, as the agent sends it."""
    return [base64.b64encode(token_management_hash(token_id)).decode()]


class CertificateCheck(Protocol):
    async def __call__(self, certificate: bytes, chain: list[bytes]) -> dict[str, Any]: ...


def identity_error(exc: IdentityError) -> PortalError:
    return PortalError(_IDENTITY_CODES.get(exc.code, Code.BAD_REQUEST), str(exc),
                       reason=exc.code)


@dataclass(eq=False)
class EnrolmentDesk:
    """The first-time signer's steps over the store, the identity service, the
    certificate check and the SMS codes."""

    store: Store
    identity: IdentityProvider
    check_certificate: CertificateCheck
    otp: SmsOtp

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except IdentityError as exc:
            raise identity_error(exc) from exc

    async def start(self, signer_id: str, generation: int) -> None:
        await asyncio.to_thread(self.store.start_enrolment, signer_id, generation)

    async def personal_data(self, signer_id: str, generation: int, *, correct: bool,
                            name: str = "", phone: str = "") -> int:
        """The generation after the step (a correction renews the link)."""
        if correct:
            await asyncio.to_thread(self.store.advance_enrolment, signer_id, generation,
                                    EnrolmentStep.PERSONAL_DATA,
                                    EnrolmentStep.ISSUANCE_CONSENTS)
            return generation
        return int(await asyncio.to_thread(self.store.correct_personal_data, signer_id,
                                           generation, name=name, phone=phone))

    async def consents(self, signer_id: str, generation: int,
                       records: list[tuple[str, str, str, str]]) -> None:
        if sorted(r[0] for r in records) != sorted(legal.ENROLMENT_KINDS):
            raise PortalError(Code.BAD_REQUEST, "both the issuance policy and the Personal "
                              "Space terms must be accepted")
        await asyncio.to_thread(self.store.record_enrolment_consents, signer_id, generation,
                                records)

    async def open_identity(self, signer_id: str, generation: int, document: str) -> str:
        try:
            kind = DocumentKind(document)
        except ValueError:
            raise PortalError(Code.BAD_REQUEST, "document: 'id-card' or 'passport'") from None
        await self._enrolment(signer_id, generation, EnrolmentStep.IDENTITY)
        own = await asyncio.to_thread(accepted_documents.for_signer, self.store.db, signer_id)
        if own is not None:  # the workspace's list (issue 15), before any capture
            accepted_documents.check_kind(own, kind)
        view = await self._run(self.identity.open_session, signer_id, kind)
        await asyncio.to_thread(self.store.update_enrolment, signer_id, generation,
                                EnrolmentStep.IDENTITY, identity_session=view.id)
        return str(view.id)

    async def identity_done(self, signer_id: str, generation: int, signer: Signer) -> None:
        enrolment = await self._enrolment(signer_id, generation, EnrolmentStep.IDENTITY)
        if not enrolment.identity_session:
            raise PortalError(Code.WRONG_STEP, "choose a document first")
        view = await self._run(self.identity.session, enrolment.identity_session)
        if view.step is not Step.VERIFIED or view.identity is None:
            raise PortalError(Code.IDENTITY_NOT_VERIFIED, f"the identity service says "
                              f"{view.step}")
        found = view.identity
        own = await asyncio.to_thread(accepted_documents.for_signer, self.store.db, signer_id)
        if own is not None:  # the workspace's list; the service checked its own
            accepted_documents.check(own, found.issuing_state, found.document)
        given, _, surname = signer.name.strip().rpartition(" ")
        comparison = names.compare(given, surname or signer.name, found.given_names,
                                   " ".join(found.surname))
        differences = [what for what, ok in (("surname", comparison.surname_matches),
                                             ("givenNames", comparison.given_names_match))
                       if not ok]
        identity = {
            "givenNames": names.display(found.given_names),
            "surname": names.display(found.surname),
            "givenNameWords": list(found.given_names), "surnameWords": list(found.surname),
            "birthDate": found.birth_date.isoformat(), "nationality": found.nationality,
            "documentNumber": found.document_number, "documentType": found.document.value,
            "issuingState": found.issuing_state, "expiry": found.expiry_date.isoformat()}
        await asyncio.to_thread(
            self.store.update_enrolment, signer_id, generation, EnrolmentStep.IDENTITY,
            step=EnrolmentStep.IDENTITY_CONFIRM, identity=identity,
            comparison={"matches": not differences, "differences": differences})

    async def confirm_identity(self, signer_id: str, generation: int, correct: bool) -> None:
        enrolment = await self._enrolment(signer_id, generation,
                                          EnrolmentStep.IDENTITY_CONFIRM)
        if not correct:
            await asyncio.to_thread(
                self.store.update_enrolment, signer_id, generation,
                EnrolmentStep.IDENTITY_CONFIRM, step=EnrolmentStep.IDENTITY,
                identity_session=None, identity=None, comparison=None)
            return
        if not (enrolment.comparison or {}).get("matches"):
            raise PortalError(Code.IDENTITY_MISMATCH, "the document names someone else than "
                              "the person this transaction is for: verify again with your "
                              "own document, or ask the requester to correct your name",
                              differences=(enrolment.comparison or {}).get("differences"))
        await asyncio.to_thread(self.store.update_enrolment, signer_id, generation,
                                EnrolmentStep.IDENTITY_CONFIRM, step=EnrolmentStep.AUTH_DATA)

    async def auth_data(self, signer_id: str, generation: int, *, given_names: str,
                        surname: str, phone: str) -> None:
        enrolment = await self._enrolment(signer_id, generation, EnrolmentStep.AUTH_DATA)
        identity = enrolment.identity or {}
        for chosen, words, what in ((given_names, identity.get("givenNameWords", []),
                                     "givenNames"),
                                    (surname, identity.get("surnameWords", []), "surname")):
            try:
                mine = names.words(chosen, icao=True)
            except names.NameInvalid as exc:
                raise PortalError(Code.BAD_REQUEST, f"{what}: {exc}") from exc
            if not mine or not set(mine) <= set(words):
                raise PortalError(Code.NAME_NOT_ON_DOCUMENT, f"{what}: choose among the "
                                  "names on your document")
        await asyncio.to_thread(
            self.store.update_enrolment, signer_id, generation, EnrolmentStep.AUTH_DATA,
            step=EnrolmentStep.PIN,
            auth={"givenNames": given_names.strip(), "surname": surname.strip(),
                  "phone": phone}, phone=phone)

    async def pin_set(self, signer_id: str, generation: int) -> None:
        await asyncio.to_thread(self.store.advance_enrolment, signer_id, generation,
                                EnrolmentStep.PIN, EnrolmentStep.CERTIFICATE)

    async def send_token_code(self, signer_id: str, generation: int, token_id: str
                              ) -> tuple[str, Sent]:
        """A code for the token's PIN/PUK and key (SECURITY #35), texted to the phone
        chosen at auth-data: (otpSession, where it went). Throttled as every SMS code
        (portal/otp.py), and a second request within the resend delay waits."""
        enrolment = await self._enrolment_in(signer_id, generation, CODE_STEPS)
        _tx, signer = await asyncio.to_thread(self.store.check_signer, signer_id,
                                              generation)
        phone = str((enrolment.auth or {}).get("phone") or signer.phone)
        if not phone:
            raise PortalError(Code.NO_PHONE, "no phone number was chosen for SMS codes")
        await asyncio.to_thread(self._cool_down, phone)
        hashes = token_hashes(token_id)
        otp_id = await asyncio.to_thread(
            self.store.new_otp_session, purpose=CODE_PURPOSE,
            subject=f"{signer_id}/{generation}", phone=phone, hashes=hashes)
        sent = await asyncio.to_thread(self.otp.send, otp_id, hashes,
                                       translate(signer.lang, _CODE_TEXT),
                                       locked_until=signer.otp_locked_until)
        log.info("token code sent to signer %s", signer_id)
        return otp_id, sent

    def _cool_down(self, phone: str) -> None:
        # Each request opens a new session: the per-session resend delay is kept per phone.
        now = self.store.clock()
        with self.store.db.transaction() as cur:
            if self.store.sms_sent_since(cur, phone, now - RESEND_AFTER):
                raise PortalError(Code.OTP_THROTTLED,
                                  retryAfter=int(RESEND_AFTER.total_seconds()))

    async def owns_code(self, otp_id: str) -> bool:
        """Is `otp_id` a token-management code of an enrolment (else a signing one)?"""
        def purpose() -> str:
            with self.store.db.transaction() as cur:
                return self.store.otp_session(cur, otp_id).purpose
        return await asyncio.to_thread(purpose) == CODE_PURPOSE

    async def verify_code(self, otp_id: str, code: str, hashes: list[str]) -> None:
        """The agent spends a token code (`/api/v1/sms-otp/verify`): once, for exactly
        the token it was sent for, while the enrolment still needs the PIN or PUK."""
        def session_subject() -> tuple[str, str]:
            with self.store.db.transaction() as cur:
                session = self.store.otp_session(cur, otp_id)
            return session.purpose, session.subject
        purpose, subject = await asyncio.to_thread(session_subject)
        signer_id, _, generation = subject.rpartition("/")
        if purpose != CODE_PURPOSE or not generation.isdigit():
            raise PortalError(Code.SESSION_UNKNOWN)
        try:
            await self._enrolment_in(signer_id, int(generation), CODE_STEPS)
            _tx, signer = await asyncio.to_thread(self.store.check_signer, signer_id,
                                                  int(generation))
        except PortalError:
            # A renewed link, a closed transaction or a finished enrolment: the code is void.
            raise PortalError(Code.SESSION_UNKNOWN) from None
        await asyncio.to_thread(self.otp.verify_for, signer, otp_id, code, hashes)

    async def evidence(self, signer_id: str, generation: int, spki: bytes) -> str:
        enrolment = await self._enrolment(signer_id, generation, EnrolmentStep.CERTIFICATE)
        try:
            asn1_keys.PublicKeyInfo.load(spki).native  # noqa: B018 - parse it all
        except ValueError:
            raise PortalError(Code.BAD_REQUEST, "publicKey: a DER SubjectPublicKeyInfo"
                              ) from None
        auth = enrolment.auth or {}
        assert enrolment.identity_session is not None
        issued = await self._run(self.identity.evidence, enrolment.identity_session, spki,
                                 given_names=auth.get("givenNames"),
                                 surname=auth.get("surname"))
        await asyncio.to_thread(self.store.update_enrolment, signer_id, generation,
                                EnrolmentStep.CERTIFICATE,
                                spki_sha256=hashlib.sha256(spki).hexdigest())
        return str(issued.token)

    async def certificate(self, signer_id: str, generation: int, certificate: bytes,
                          chain: list[bytes]) -> None:
        enrolment = await self._enrolment(signer_id, generation, EnrolmentStep.CERTIFICATE)
        try:
            cert = x509.Certificate.load(certificate)
            spki = cert.public_key.dump()
        except ValueError:
            raise PortalError(Code.BAD_REQUEST, "certificate: DER X.509") from None
        if enrolment.spki_sha256 != hashlib.sha256(spki).hexdigest():
            raise PortalError(Code.KEY_MISMATCH, "this certificate is not for the key the "
                              "identity evidence was given for")
        checked = await self.check_certificate(certificate, chain)
        if not checked["qualified"]:
            raise PortalError(Code.NOT_QUALIFIED, "the certificate is not qualified",
                              reasons=checked["reasons"])
        await asyncio.to_thread(self.store.finish_enrolment, signer_id, generation,
                                certificate, chain)
        log.info("signer %s enrolled: certificate %x", signer_id, cert.serial_number)

    async def _enrolment(self, signer_id: str, generation: int, step: EnrolmentStep
                         ) -> Enrolment:
        return await self._enrolment_in(signer_id, generation, (step,))

    async def _enrolment_in(self, signer_id: str, generation: int,
                            steps: tuple[EnrolmentStep, ...]) -> Enrolment:
        enrolment = await asyncio.to_thread(self.store.enrolment, signer_id, generation)
        if enrolment is None or enrolment.step not in steps:
            raise PortalError(Code.WRONG_STEP, f"this is not the {steps[0]} step")
        return enrolment


def request_view(enrolment: Enrolment, issuer: str) -> dict[str, Any] | None:
    """The certificate request the signer reads before authorising it."""
    if enrolment.auth is None or enrolment.identity is None:
        return None
    auth, identity = enrolment.auth, enrolment.identity
    # As the certificate will say (ETSI EN 319 412-1 §5.1.3 semantics identifier).
    state = countries.lookup(str(identity.get("issuingState")))
    country = state.alpha2 if state is not None and state.alpha2 else identity.get(
        "issuingState")
    try:
        kind = DocumentKind(str(identity.get("documentType"))).semantics
    except ValueError:
        kind = "IDC"
    return {"subject": {"givenName": auth["givenNames"], "surname": auth["surname"],
                        "commonName": f"{auth['givenNames']} {auth['surname']}",
                        "country": country,
                        "serialNumber": f"{kind}{country}-{identity.get('documentNumber')}"},
            "policy": "QCP-n-qscd (0.4.0.194112.1.2)", "validityYears": 5,
            "keyUsage": "nonRepudiation", "issuer": issuer}


def enrolment_view(enrolment: Enrolment, signer: Signer, lang: str, issuer: str,
                   accepted: set[tuple[str, str]]) -> dict[str, Any]:
    from portal.otp import mask_phone

    certificate = None
    if enrolment.certificate is not None:
        cert = x509.Certificate.load(enrolment.certificate)
        certificate = {"serial": f"{cert.serial_number:x}",
                       "notBefore": cert.not_valid_before.isoformat(),
                       "notAfter": cert.not_valid_after.isoformat(),
                       "subject": cert.subject.human_friendly}
    identity = None
    if enrolment.identity is not None:
        identity = {k: v for k, v in enrolment.identity.items()
                    if k not in ("givenNameWords", "surnameWords")}
        identity["givenNameChoices"] = [names.display([w]) for w in
                                        enrolment.identity.get("givenNameWords", [])]
        identity["surnameChoices"] = [names.display([w]) for w in
                                      enrolment.identity.get("surnameWords", [])]
    return {
        "step": enrolment.step.value,
        "data": {"name": signer.name, "phone": signer.phone,
                 "phoneMasked": mask_phone(signer.phone)},
        "consents": [{"kind": t.kind, "version": t.version, "sha256": t.sha256,
                      "lang": t.lang, "title": t.title,
                      "url": f"/legal/{t.kind}/{t.version}",
                      "accepted": (t.kind, t.version) in accepted}
                     for t in legal.current(lang, legal.ENROLMENT_KINDS)],
        "identitySession": enrolment.identity_session,
        "identity": identity,
        "comparison": enrolment.comparison,
        "auth": enrolment.auth,
        "request": request_view(enrolment, issuer) if enrolment.step in (
            EnrolmentStep.CERTIFICATE, EnrolmentStep.DONE) else None,
        "certificate": certificate,
    }


def b64_spki(body: dict[str, Any]) -> bytes:
    value = body.get("publicKey")
    if not isinstance(value, str) or len(value) > 4096:
        raise PortalError(Code.BAD_REQUEST, "publicKey: base64 SubjectPublicKeyInfo")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise PortalError(Code.BAD_REQUEST, "publicKey: not base64") from None

