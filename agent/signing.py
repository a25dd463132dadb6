"""Two factors, then signatures: the agent's `credentials/sendOTP`,
`credentials/authorize`, `signatures/signHash` and `documents/signPdf`, shared by the
WebSocket and the CSC REST facade.

authorize: the OTP is checked first (a wrong OTP never costs a PIN try), then the
card verifies the PIN right before each signature, which the token makes at once
and which the journal keeps before anything is answered; the PIN is dropped.
The answer is a SAD: single use, bound to the credential, the exact hashes and the
origin, valid at most 5 minutes. signHash hands out the journaled signatures for
hashes the SAD covers, once (or again for a retry with the same idempotency key).

The OTP is a TOTP code checked here, or, when the request names an `otpSession`, an
SMS code that the signature service (config `portal_url`) sent for that session and
checks for exactly the hashes being authorised. Config `otp_mode` ("totp", "sms",
"any") says which are accepted. For `documents/signPdf` the hashes an SMS code is
bound to are the SHA-256 digests of the documents as submitted (the PDF bytes,
before signing), in their order.

Durability, with one fsync per call (the TOTP state, the SADs and the journal share
one SQLite file, agent.journal): an accepted TOTP step is committed without its own
fsync (it survives kill -9 at once), then the SAD and its signatures are written in
one synchronous transaction, whose fsync of the WAL makes the TOTP step durable too,
before the SAD is answered; if anything fails in between, the TOTP state is synced
before the error is answered. So the signatures are on disk, power-loss durable,
before anyone can ask for them.

signHash spends the SAD and marks its signatures delivered in one transaction that
survives kill -9 at once (SECURITY #30) and is made power-loss durable by the next
synchronous commit, without an fsync of its own: it creates nothing that is not
already durable. Were a power cut to undo it, the SAD could, until its expiry, be
presented again by the same origin for the same hashes, and would get the very same
signature bytes back, already journaled: never a second signature. (A one-word
change, `durable=True` in `sign_hash`, buys back a strict single delivery across
power loss for one fsync per call.)
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from agent.errors import SadRefused, SigningRequestInvalid
from agent.identity.otp import OtpMethodNotAllowed, SmsChallenge, SmsOtpProvider, TotpVerifier
from agent.issuers import IssuerChain
from agent.journal import JournalError, SignatureJournal
from agent.pades import Level, sign_pdfs, token_signer
from agent.policy import MAX_TTL_SECONDS, SadInvalid, SadIssuer
from agent.tokens.errors import KeyNotFound
from agent.tokens.model import (
    HashAlgorithm,
    KeyType,
    Padding,
    SignatureAlgorithm,
    Token,
    split_credential,
)
from agent.tokens.registry import TokenRegistry

log = logging.getLogger(__name__)

_BY_LENGTH = {32: HashAlgorithm.SHA256, 48: HashAlgorithm.SHA384, 64: HashAlgorithm.SHA512}
OTP_MODES = ("totp", "sms", "any")


@dataclass(frozen=True)
class Authorization:
    sad: str
    expires_in: int


class SigningService:
    def __init__(self, registry: TokenRegistry, totp: TotpVerifier, sads: SadIssuer,
                 journal: SignatureJournal, timestamp_url: str | None = None, *,
                 sms: SmsOtpProvider | None = None, otp_mode: str = "any",
                 issuers: IssuerChain | None = None) -> None:
        if otp_mode not in OTP_MODES:
            raise ValueError(f"otp_mode: one of {OTP_MODES}")
        self.timestamp_url = timestamp_url
        self.registry = registry
        self.totp = totp
        self.sads = sads
        self.journal = journal
        self.sms = sms
        self.otp_mode = otp_mode
        self.issuers = issuers  # completes the chain a PAdES signature carries
        # Key types of keys that signed, per token object (a token taken out and put back
        # is a new object): saves listing the token's objects before each signature.
        self._key_types: weakref.WeakKeyDictionary[Token, dict[str, KeyType]] = \
            weakref.WeakKeyDictionary()

    # The second factor ------------------------------------------------------------------

    def _sms_provider(self) -> SmsOtpProvider:
        if self.otp_mode == "totp":
            raise OtpMethodNotAllowed("this agent accepts TOTP codes only "
                                      "(otp_mode = \"totp\")")
        if self.sms is None:
            raise OtpMethodNotAllowed("SMS one-time passwords need the agent's portal_url")
        return self.sms

    async def send_otp(self, *, origin: str, credential_id: str, hashes: list[bytes],
                       otp_session: str) -> SmsChallenge:
        """CSC credentials/sendOTP: the signature service texts a code for `hashes`."""
        split_credential(credential_id)
        _hash_algorithm(hashes)
        provider = self._sms_provider()
        challenge = await provider.send(otp_session, hashes)
        log.info("SMS OTP sent for %d hash(es), %s, from %s", len(hashes), credential_id,
                 origin)
        return challenge

    async def check_otp(self, account: str, code: str, otp_session: str | None,
                        hashes: Sequence[bytes], *, sync: bool = False) -> bool:
        """The OTP, before anything touches the card: a TOTP code of `account` (a
        credential id), or with `otp_session` an SMS code the signature service checks
        for exactly `hashes`. Raises OtpError. True when an accepted TOTP step is not yet
        fsynced (the caller owes a durable commit or `_totp_sync`); sync=True fsyncs it."""
        if otp_session is not None:
            await self._sms_provider().verify(otp_session, code, hashes)
            return False
        if self.otp_mode == "sms":
            raise OtpMethodNotAllowed("this agent accepts SMS codes only "
                                      "(otpSession; otp_mode = \"sms\")")
        self.totp.verify(account, code, durable=sync)
        return not sync

    def _totp_sync(self) -> None:
        self.journal.db.sync()

    # Hashes -----------------------------------------------------------------------------

    async def authorize(self, *, origin: str, credential_id: str, hashes: list[bytes],
                        otp: str, pin: str, padding: Padding | None = None,
                        otp_session: str | None = None) -> Authorization:
        token_id, key_id = split_credential(credential_id)
        hash_algorithm = _hash_algorithm(hashes)
        if len(hashes) > 100:
            raise SigningRequestInvalid("at most 100 hashes per authorisation")
        if len(set(hashes)) != len(hashes):
            raise SigningRequestInvalid("each hash once per authorisation")
        # First: a wrong OTP never burns a PIN try.
        owed_sync = await self.check_otp(credential_id, otp, otp_session, hashes)

        def sign_all(token: Token) -> tuple[SignatureAlgorithm, list[bytes]]:
            # One worker job: no other operation's APDUs come between these.
            known = self._key_types.setdefault(token, {})
            key_type = known.get(key_id)
            if key_type is None:
                key = next((c for c in token.credentials() if c.id == key_id), None)
                if key is None:
                    raise KeyNotFound(key_id)
                key_type = key.key_type
            chosen = padding or (Padding.ECDSA if key_type.is_ec else Padding.PKCS1V15)
            algorithm = SignatureAlgorithm(chosen, hash_algorithm)
            try:
                made = token.sign_digests(key_id, [(h, algorithm) for h in hashes], pin=pin)
            except BaseException:
                known.pop(key_id, None)  # perhaps the key changed: look again next time
                raise
            known[key_id] = key_type
            return algorithm, made

        try:
            algorithm, signatures = await self.registry.call(token_id, sign_all)
            # One transaction, one fsync: the SAD, its signatures (and the TOTP step).
            with self.journal.db.transaction() as cur:
                sad = self.sads.issue(credential_id=credential_id, hashes=hashes,
                                      origin=origin, num_signatures=len(hashes),
                                      ttl_seconds=MAX_TTL_SECONDS, cur=cur)
                self.journal.record(sad_hash=_sad_hash(sad), origin=origin,
                                    credential=credential_id, algorithm=str(algorithm),
                                    signatures=list(zip(hashes, signatures, strict=True)),
                                    cur=cur)
        except BaseException:
            if owed_sync:
                self._totp_sync()
            raise
        log.info("authorised %d signature(s) for %s from %s", len(hashes), credential_id,
                 origin)
        return Authorization(sad, MAX_TTL_SECONDS)

    async def sign_hash(self, *, origin: str, credential_id: str, sad: str,
                        hashes: list[bytes], padding: Padding | None = None,
                        idempotency_key: str | None = None) -> list[bytes]:
        split_credential(credential_id)
        hash_algorithm = _hash_algorithm(hashes)
        sad_hash = _sad_hash(sad)
        wanted = None if padding is None else str(SignatureAlgorithm(padding, hash_algorithm))
        refusal: Exception | None = None
        # One transaction: spend the SAD and deliver its (durable) signatures.
        with self.journal.db.transaction(durable=False) as cur:
            try:
                if idempotency_key is not None:
                    again = self.journal.replay(idempotency_key=idempotency_key,
                                                sad_hash=sad_hash, hashes=hashes,
                                                origin=origin, credential=credential_id,
                                                cur=cur)
                    if again is not None:
                        return again
                grant = self.sads.spend(cur, sad, credential_id=credential_id, hashes=hashes,
                                        origin=origin)
                if isinstance(grant, SadInvalid):
                    refusal = grant  # committed (the SAD is spent), raised below
                else:
                    return self.journal.deliver(sad_hash=sad_hash, hashes=hashes,
                                                idempotency_key=idempotency_key,
                                                algorithm=wanted, cur=cur)
            except JournalError as exc:
                refusal = exc  # the SAD stays spent: commit, then refuse
        if isinstance(refusal, SadInvalid):
            raise SadRefused("signature activation data invalid",
                             str(refusal.reason)) from refusal
        raise SadRefused(str(refusal)) from refusal

    # PDFs -------------------------------------------------------------------------------

    async def sign_pdfs(self, *, origin: str, credential_id: str, documents: list[bytes],
                        otp: str, pin: str, level: str, timestamp_url: str | None,
                        otp_session: str | None = None) -> list[bytes]:
        """One authorisation (OTP, then the PIN on the card) for a batch of PDFs. An SMS
        code (otpSession) is bound to `document_hashes(documents)`."""
        split_credential(credential_id)
        owed_sync = await self.check_otp(credential_id, otp, otp_session,
                                          document_hashes(documents))
        if owed_sync:
            # No journal commit follows (PDF signatures are returned, not journaled):
            # the accepted step is made power-loss durable before the card is used.
            self._totp_sync()
        signer = await token_signer(self.registry, credential_id, pin, self.issuers)
        signed = await sign_pdfs(signer, documents, level=Level(level),
                                 timestamp_url=timestamp_url, forget_pin=True)
        log.info("signed %d PDF(s) with %s for %s", len(signed), credential_id, origin)
        return signed


def document_hashes(documents: Sequence[bytes]) -> list[bytes]:
    """What an SMS code for `documents/signPdf` is bound to: the SHA-256 of each
    document as submitted, in order."""
    return [hashlib.sha256(d).digest() for d in documents]


def _hash_algorithm(hashes: list[bytes]) -> HashAlgorithm:
    """The hash algorithm from the digest length (CSC v1 authorize does not name it)."""
    if not hashes or len({len(h) for h in hashes}) != 1 or len(hashes[0]) not in _BY_LENGTH:
        raise SigningRequestInvalid("hashes: SHA-256/384/512 digests, one length")
    return _BY_LENGTH[len(hashes[0])]


def _sad_hash(sad: str) -> str:
    return hashlib.sha256(sad.encode()).hexdigest()
