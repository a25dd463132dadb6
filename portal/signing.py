"""The portal's side of a signature: check the certificate, prepare every document of
the transaction (one hash each), open the SMS OTP session bound to those hashes, and,
when the page brings the token's signatures back, finish every document and store them
all at once. The portal never sees the PIN or the key.

Order of a signing session (portal/API.md):
  prepare   -> hashes + otpSession (nothing stored for the documents yet)
  the agent -> /api/v1/sms-otp/send, /verify (the code is bound to these hashes)
  complete  -> needs the verified code; each signature verified against the
               certificate; every signed version stored in one database transaction.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import cms, pem, x509

from portal import pades
from portal.blobs import BlobStore
from portal.certificates import CertificateMalformed, QualifiedCheck, check_qualified
from portal.config import PortalConfig
from portal.errors import Code, PortalError
from portal.holders import Ownership, ownership
from portal.otp import Sent, SmsOtp
from portal.pades.pdf import Box
from portal.store import Document, Signer, SignerStatus, Store, Transaction
from portal.store.parameters import Appearance
from portal.translations import translate

log = logging.getLogger(__name__)

SESSION_TTL = dt.timedelta(minutes=10)
MAX_CHAIN_FETCH = 4
_PADES_ERRORS: dict[type[pades.PadesError], Code] = {
    pades.PdfInvalid: Code.PDF_INVALID, pades.CertificateRejected: Code.NOT_QUALIFIED,
    pades.SignatureInvalid: Code.SIGNATURE_INVALID,
    pades.TrustServiceError: Code.UNAVAILABLE, pades.PreparedInvalid: Code.INTERNAL,
    pades.ValidationConfigError: Code.INTERNAL,
}


def load_roots(paths: tuple[Path, ...]) -> list[bytes]:
    roots: list[bytes] = []
    for path in paths:
        data = path.read_bytes()
        if pem.detect(data):
            roots.extend(der for _, _, der in pem.unarmor(data, multiple=True))
        else:
            roots.append(data)
    return roots


def pades_error(exc: pades.PadesError) -> PortalError:
    """pyHanko-side refusals on the wire (mapped here, once)."""
    for kind, code in _PADES_ERRORS.items():
        if isinstance(exc, kind):
            if code is Code.INTERNAL:
                log.error("PAdES: %s", exc)
                return PortalError(code)
            return PortalError(code, str(exc))
    return PortalError(Code.INTERNAL)


@dataclass(frozen=True)
class Completion:
    transaction: Transaction
    next_signers: tuple[Signer, ...]  # whose turn came: to invite now
    stored: bool  # False: a retry of a completion already stored (notify nobody again)


class SigningDesk:
    def __init__(self, config: PortalConfig, store: Store, blobs: BlobStore, otp: SmsOtp
                 ) -> None:
        self.config = config
        self.store = store
        self.blobs = blobs
        self.otp = otp
        self.roots = load_roots(config.trust_roots)
        self.intermediates = load_roots(config.intermediates)
        # Who issues signers' certificates: the issuing CA when configured, else the root.
        self.issuer_name = ", ".join(
            x509.Certificate.load(r).subject.native.get("common_name", "")
            for r in (self.intermediates or self.roots)
        ) or "the qualified certification authority"
        self._validation: pades.Validation | None = None

    @property
    def validation(self) -> pades.Validation:
        if self._validation is None:
            if not self.roots:
                raise PortalError(Code.UNAVAILABLE, "no trust roots are configured "
                                  "(portal.trust_roots)")
            self._validation = pades.Validation(trust_roots=self.roots,
                                                timestamp_url=self.config.timestamp_url)
        return self._validation

    async def _check(self, certificate: bytes, chain: list[bytes]) -> QualifiedCheck:
        if not self.roots:
            raise PortalError(Code.UNAVAILABLE, "no trust roots are configured "
                              "(portal.trust_roots)")
        # The card holds only its own certificate: complete the path first.
        chain = await self.complete_chain(certificate, chain)
        try:
            return await check_qualified(certificate, chain, trust_roots=self.roots,
                                         at=self.store.clock(),
                                         ocsp=self.config.check_revocation)
        except CertificateMalformed as exc:
            raise PortalError(Code.BAD_REQUEST, str(exc)) from exc

    async def complete_chain(self, certificate: bytes, chain: list[bytes]) -> list[bytes]:
        """`chain` plus the issuers it lacks up to a trust root, fetched from each
        certificate's AIA caIssuers (RFC 5280 §4.2.2.1; DER or a certs-only PKCS#7). A
        token usually holds only its own certificate; the path also serves the
        signature-time-stamp, whose TSA shares the issuing CA. Configured intermediates
        first; AIA only from the configured prefixes, without redirects."""
        roots = {x509.Certificate.load(r).subject.dump() for r in self.roots}
        known = list(chain)
        pool = known + self.intermediates
        current = _load(certificate)
        for _ in range(MAX_CHAIN_FETCH):
            if (current is None or current.issuer.dump() in roots
                    or current.self_signed != "no"):  # asn1crypto: "no", "maybe", "yes"
                break
            found = next((c for c in map(_load, pool)
                          if c is not None and c.subject == current.issuer), None)
            if found is None:
                found = await self._fetch_issuer(current)
                if found is None:
                    break
            if found.dump() not in known:
                known.append(found.dump())
            current = found
        return known

    async def _fetch_issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        urls = [d["access_location"].native for d in (cert.authority_information_access_value
                                                      or [])
                if d["access_method"].native == "ca_issuers"]
        allowed = self.config.ca_issuers_prefixes
        for url in urls:
            if not isinstance(url, str) or not allowed or not url.startswith(allowed):
                continue
            try:
                async with aiohttp.ClientSession() as session, session.get(
                        url, timeout=aiohttp.ClientTimeout(total=10),
                        allow_redirects=False) as response:
                    if response.status != 200:
                        continue
                    data = await response.content.read(64 * 1024)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("caIssuers %s: %s", url, exc)
                continue
            for der in _certificates_in(data):
                issuer = _load(der)
                if issuer is not None and issuer.subject == cert.issuer:
                    return issuer
        return None

    async def check(self, certificate: bytes, chain: list[bytes]) -> dict[str, Any]:
        result = await self._check(certificate, chain)
        # Codes for pages to translate: "no-qc-statements" -> "NO_QC_STATEMENTS".
        return {**_described(result),
                "reasons": [r.upper().replace("-", "_") for r in result.reasons]}

    async def check_for_signer(self, signer_id: str, generation: int, certificate: bytes,
                               chain: list[bytes]) -> dict[str, Any]:
        """`check`, and whether the certificate is this signer's (portal/holders.py):
        `ownCertificate`, `holder` (whom its subject names) and, when it is someone
        else's, the reason CERTIFICATE_NOT_SIGNERS with `ownership` saying why."""
        _, signer = await asyncio.to_thread(self.store.check_signer, signer_id, generation)
        checked = await self.check(certificate, chain)
        owner = await asyncio.to_thread(ownership, self.store, signer, certificate)
        checked.update(ownCertificate=owner.own, holder=owner.holder.name)
        if owner.refusal is not None:
            checked["reasons"].append(Code.CERTIFICATE_NOT_SIGNERS.value)
            checked["ownership"] = owner.refusal.value
        return checked

    async def describe(self, certificate: bytes, chain: list[bytes]) -> dict[str, Any]:
        """A certificate as Personal Space lists it, with its status today."""
        result = await self._check(certificate, chain)
        return {**_described(result), "serial": result.serial, "status": result.status}

    async def prepare(self, signer_id: str, generation: int, certificate: bytes,
                      chain: list[bytes]) -> dict[str, Any]:
        tx, signer = await asyncio.to_thread(self.store.check_signer, signer_id, generation)
        if signer.status is not SignerStatus.ACCEPTED:
            code = Code.ALREADY_SIGNED if signer.status is SignerStatus.SIGNED else \
                Code.WRONG_STEP
            raise PortalError(code, "read and accept the documents first"
                              if code is Code.WRONG_STEP else None)
        kept = await asyncio.to_thread(self.store.parameters, tx.id)
        by_sms = kept.second_factor == "sms"  # TOTP: the signer's agent checks it alone
        if by_sms and not signer.phone:
            raise PortalError(Code.NO_PHONE, "no phone number on file for the SMS code")
        _refuse_unless_own(await asyncio.to_thread(ownership, self.store, signer,
                                                   certificate))
        chain = await self.complete_chain(certificate, chain)
        if tx.qualified:
            checked = await self.check(certificate, chain)
            if not checked["qualified"]:
                raise PortalError(Code.NOT_QUALIFIED, "this certificate cannot make a "
                                  "qualified signature", reasons=checked["reasons"])
        name = _common_name(certificate) or signer.name or signer.email
        appearance = await asyncio.to_thread(self.store.signer_appearance, signer_id)
        prepared_docs: list[tuple[str, int, str]] = []
        hashes: list[str] = []
        for doc in tx.documents:
            data = await asyncio.to_thread(self.blobs.get, doc.current.sha256)
            try:
                field, box = _placed(appearance, doc, signer)
                prepared = await pades.prepare(
                    data, certificate, chain, level=tx.level, field_name=field,
                    signer_name=name, reason=f"Signed: {tx.title}"[:200], location=None,
                    validation=self.validation, box=box)
            except pades.PadesError as exc:
                raise pades_error(exc) from exc
            except ValueError as exc:
                raise PortalError(Code.BAD_REQUEST, str(exc)) from exc
            blob = await asyncio.to_thread(self.blobs.put, prepared.to_bytes())
            prepared_docs.append((doc.id, doc.current.version, blob))
            hashes.append(base64.b64encode(prepared.digest).decode())
        session = await asyncio.to_thread(
            self.store.open_signing_session, signer_id, generation, certificate=certificate,
            chain=chain, documents=prepared_docs, hashes=hashes, ttl=SESSION_TTL)
        otp_id = await asyncio.to_thread(self.store.new_otp_session, purpose="sign",
                                         subject=session.id, phone=signer.phone,
                                         hashes=hashes) if by_sms else None
        log.info("signing session %s: %d document(s) prepared for signer %s", session.id,
                 len(hashes), signer_id)
        return {"sessionId": session.id, "otpSession": otp_id, "hashes": hashes,
                "hashAlgorithm": "SHA256", "documents": [d for d, _, _ in prepared_docs],
                "secondFactor": kept.second_factor,
                "expiresIn": int(SESSION_TTL.total_seconds())}

    async def send_code(self, otp_id: str, hashes: list[str]) -> Sent:
        with self.store.db.transaction() as cur:
            session = self.store.otp_session(cur, otp_id)
        if session.purpose != "sign":
            raise PortalError(Code.SESSION_UNKNOWN)
        tx, signer = await self._session_signer(session.subject)
        count = len(tx.documents)
        text = translate(signer.lang, 'qsign: {code} is your code to sign {count} document(s) '
                         '"{title}". Valid 5 minutes. Never share it.').format(
            code="{code}", count=count, title=tx.title[:40])  # {code}: filled when sent
        return await asyncio.to_thread(self.otp.send, otp_id, hashes, text,
                                       locked_until=signer.otp_locked_until)

    async def verify_code(self, otp_id: str, code: str, hashes: list[str]) -> None:
        with self.store.db.transaction() as cur:
            session = self.store.otp_session(cur, otp_id)
        if session.purpose != "sign":
            raise PortalError(Code.SESSION_UNKNOWN)
        _, signer = await self._session_signer(session.subject)
        await asyncio.to_thread(self.otp.verify_for, signer, otp_id, code, hashes)

    async def _session_signer(self, session_id: str) -> tuple[Transaction, Signer]:
        session = await asyncio.to_thread(self.store.signing_session, session_id)
        if session.state != "prepared":
            raise PortalError(Code.SESSION_UNKNOWN, f"this signing session is {session.state}")
        return await asyncio.to_thread(self.store.check_signer, session.signer_id,
                                       session.generation)

    async def complete(self, signer_id: str, generation: int, session_id: str,
                       signatures: list[bytes]) -> Completion:
        session = await asyncio.to_thread(self.store.signing_session, session_id)
        if session.signer_id != signer_id or session.generation != generation:
            raise PortalError(Code.SESSION_UNKNOWN)
        if session.state == "completed":
            # A retry after an answer was lost (a crash, a dropped connection): the
            # documents were stored once; say so again, sign nothing twice.
            tx, _ = await asyncio.to_thread(self.store.check_signer, signer_id, generation)
            return Completion(tx, (), stored=False)
        if session.state != "prepared":
            raise PortalError(Code.SESSION_UNKNOWN, f"this signing session is {session.state}")
        tx_id = (await asyncio.to_thread(self.store.transaction_of_signer, signer_id)).id
        by_sms = (await asyncio.to_thread(self.store.parameters, tx_id)).second_factor == "sms"
        if by_sms and not await asyncio.to_thread(self.store.code_verified, session_id):
            raise PortalError(Code.OTP_INVALID, "the SMS code for this session was not "
                              "verified")
        if len(signatures) != len(session.documents):
            raise PortalError(Code.BAD_REQUEST, f"signatures: one per document "
                              f"({len(session.documents)})")
        preparations = [pades.Prepared.from_bytes(
            await asyncio.to_thread(self.blobs.get, blob)) for _, _, blob in session.documents]
        try:  # every signature first: a bad one costs no timestamp, stores nothing
            for prepared, signature in zip(preparations, signatures, strict=True):
                pades.check_signature(prepared, signature)
        except pades.PadesError as exc:
            raise pades_error(exc) from exc
        signed: list[tuple[str, str, int]] = []
        for (doc_id, _base, _blob), prepared, signature in zip(
                session.documents, preparations, signatures, strict=True):
            try:
                data = await pades.complete(prepared, signature, validation=self.validation)
            except pades.PadesError as exc:
                raise pades_error(exc) from exc
            sha = await asyncio.to_thread(self.blobs.put, data)
            signed.append((doc_id, sha, len(data)))
        # Every blob is on disk; one transaction now makes them the documents' versions.
        tear_point("complete:blobs-stored")
        tx, next_signers = await asyncio.to_thread(
            self.store.complete_signing, session_id, signer_id, generation, signed=signed,
            certificate_sha256=hashlib.sha256(session.certificate).hexdigest())
        tear_point("complete:committed")
        log.info("signer %s signed %d document(s) (session %s)", signer_id, len(signed),
                 session_id)
        return Completion(tx, tuple(next_signers), stored=True)


def _placed(appearance: Appearance | None, doc: Document, signer: Signer
            ) -> tuple[str, Box | None]:
    """The signature field's name and, for a visible signature placed by page and
    rectangle, its box: the requester's field by name, their place on each document that
    has that page, else an invisible signature in a field of our own."""
    own = f"Signature{doc.current.version + 1}_{signer.position + 1}"
    if appearance is None:
        return own, None
    if appearance.field is not None:
        return appearance.field, None
    if appearance.page is None or appearance.rect is None or appearance.page > doc.pages:
        return own, None
    return own, (appearance.page, appearance.rect)


def _refuse_unless_own(owner: Ownership) -> None:
    """SECURITY #39: someone else's certificate is refused before anything is prepared."""
    if owner.refusal is None:
        return
    name = owner.holder.name or "someone else"
    raise PortalError(Code.CERTIFICATE_NOT_SIGNERS, f"this certificate was issued to "
                      f"{name}, not to the signer invited here: sign with your own",
                      holder=owner.holder.name, ownership=owner.refusal.value)


def tear_point(name: str) -> None:
    """Fault injection for the crash tests: QSIGN_PORTAL_TEAR=<name> ends the process
    here at once, as kill -9 would (no cleanup, no answer)."""
    if os.environ.get("QSIGN_PORTAL_TEAR") == name:
        os._exit(137)


def _load(der: bytes) -> x509.Certificate | None:
    try:
        cert = x509.Certificate.load(der)
        cert.native  # noqa: B018 - parse it all now: a broken certificate is None here
    except ValueError:
        return None
    return cert


def _certificates_in(data: bytes) -> list[bytes]:
    """A DER certificate, PEM certificates, or a certs-only PKCS#7 (RFC 5280 §4.2.2.1)."""
    if pem.detect(data):
        return [der for _, _, der in pem.unarmor(data, multiple=True)]
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native == "signed_data":
            return [c.chosen.dump() for c in info["content"]["certificates"]]
    except ValueError:
        pass
    return [data]


def _common_name(certificate: bytes) -> str | None:
    try:
        subject = x509.Certificate.load(certificate).subject.native
    except ValueError:
        return None
    name = subject.get("common_name")
    return name if isinstance(name, str) else None


def _described(result: QualifiedCheck) -> dict[str, Any]:
    """What the pages show of any certificate checked: names, validity, qualified."""
    return {"qualified": result.qualified, "subject": result.subject, "issuer": result.issuer,
            "issuerOrganisation": result.issuer_organisation,
            "commonName": result.common_name, "notBefore": _iso(result.not_before),
            "notAfter": _iso(result.not_after)}


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
