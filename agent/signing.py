"""Two factors, then signatures: the agent's `credentials/authorize` and
`signatures/signHash`, shared by the WebSocket and the CSC REST facade.

authorize: the OTP is checked first (a wrong OTP never costs a PIN try), then the
card verifies the PIN right before each signature, which the token makes at once
and which the journal keeps before anything is answered; the PIN is dropped.
The answer is a SAD: single use, bound to the credential, the exact hashes and the
origin, valid at most 5 minutes. signHash hands out the journaled signatures for
hashes the SAD covers, once (or again for a retry with the same idempotency key).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from agent.identity.otp import OtpError, TotpVerifier
from agent.journal import JournalError, SignatureJournal
from agent.policy import MAX_TTL_SECONDS, SadInvalid, SadIssuer
from agent.protocol.errors import ErrorCode, RpcError
from agent.tokens.model import HashAlgorithm, Padding, SignatureAlgorithm, Token
from agent.tokens.registry import TokenRegistry

log = logging.getLogger(__name__)

_BY_LENGTH = {32: HashAlgorithm.SHA256, 48: HashAlgorithm.SHA384, 64: HashAlgorithm.SHA512}


@dataclass(frozen=True)
class Authorization:
    sad: str
    expires_in: int


def otp_error(exc: OtpError) -> RpcError:
    """OTP failures on the wire (mapped here, once)."""
    from agent.identity import otp

    retry = getattr(exc, "retry_after_seconds", None)
    data = {"retryAfter": retry} if retry else {}
    if isinstance(exc, otp.OtpInvalid):
        return RpcError(ErrorCode.INVALID_OTP, data={**data,
                                                     "attemptsLeft": exc.attempts_left})
    if isinstance(exc, otp.OtpReplayed):
        return RpcError(ErrorCode.INVALID_OTP, "this code was already used")
    if isinstance(exc, otp.OtpNotEnrolled):
        return RpcError(ErrorCode.INVALID_OTP, "no one-time password is enrolled")
    return RpcError(ErrorCode.OTP_THROTTLED, data=data)


class SigningService:
    def __init__(self, registry: TokenRegistry, totp: TotpVerifier, sads: SadIssuer,
                 journal: SignatureJournal, timestamp_url: str | None = None) -> None:
        self.timestamp_url = timestamp_url
        self.registry = registry
        self.totp = totp
        self.sads = sads
        self.journal = journal

    async def authorize(self, *, origin: str, credential_id: str, hashes: list[bytes],
                        otp: str, pin: str, padding: Padding | None = None) -> Authorization:
        token_id, key_id = split_credential(credential_id)
        hash_algorithm = _hash_algorithm(hashes)
        if len(hashes) > 100:
            raise RpcError(ErrorCode.BAD_REQUEST, "at most 100 hashes per authorisation")
        try:
            self.totp.verify(credential_id, otp)  # first: a wrong OTP never burns a PIN try
        except OtpError as exc:
            raise otp_error(exc) from exc

        def sign_all(token: Token) -> tuple[SignatureAlgorithm, list[bytes]]:
            # One worker job: no other operation's APDUs come between these.
            key = next((c for c in token.credentials() if c.id == key_id), None)
            if key is None:
                raise RpcError(ErrorCode.KEY_NOT_FOUND)
            chosen = padding or (Padding.ECDSA if key.key_type.is_ec else Padding.PKCS1V15)
            algorithm = SignatureAlgorithm(chosen, hash_algorithm)
            return algorithm, [token.sign_digest(key_id, h, algorithm, pin=pin)
                               for h in hashes]

        algorithm, signatures = await self.registry.call(token_id, sign_all)
        sad = self.sads.issue(credential_id=credential_id, hashes=hashes, origin=origin,
                              num_signatures=len(hashes), ttl_seconds=MAX_TTL_SECONDS)
        self.journal.record(sad_hash=_sad_hash(sad), origin=origin, credential=credential_id,
                            algorithm=str(algorithm),
                            signatures=list(zip(hashes, signatures, strict=True)))
        log.info("authorised %d signature(s) for %s from %s", len(hashes), credential_id,
                 origin)
        return Authorization(sad, MAX_TTL_SECONDS)

    async def sign_hash(self, *, origin: str, credential_id: str, sad: str,
                        hashes: list[bytes], padding: Padding | None = None,
                        idempotency_key: str | None = None) -> list[bytes]:
        split_credential(credential_id)
        hash_algorithm = _hash_algorithm(hashes)
        sad_hash = _sad_hash(sad)
        try:
            if idempotency_key is not None:
                again = self.journal.replay(idempotency_key=idempotency_key,
                                            sad_hash=sad_hash, hashes=hashes)
                if again is not None:
                    return again
            self.sads.consume(sad, credential_id=credential_id, hashes=hashes, origin=origin)
            if padding is not None:
                wanted = str(SignatureAlgorithm(padding, hash_algorithm))
                made = {e.hash: e.algorithm for e in self.journal.entries()
                        if e.sad_hash == sad_hash}
                if any(made.get(h, wanted) != wanted for h in hashes):
                    raise RpcError(ErrorCode.SAD_INVALID, "signature algorithm differs from "
                                   "the authorisation's")
            return self.journal.deliver(sad_hash=sad_hash, hashes=hashes,
                                        idempotency_key=idempotency_key)
        except SadInvalid as exc:
            raise RpcError(ErrorCode.SAD_INVALID, data={"reason": str(exc.reason)}) from exc
        except JournalError as exc:
            raise RpcError(ErrorCode.SAD_INVALID, str(exc)) from exc


    async def sign_pdfs(self, *, origin: str, credential_id: str, documents: list[bytes],
                        otp: str, pin: str, level: str, timestamp_url: str | None
                        ) -> list[bytes]:
        """One authorisation (OTP, then the PIN on the card) for a batch of PDFs."""
        from agent.pades import Level, PdfRefused, sign_pdf, token_signer

        split_credential(credential_id)
        try:
            self.totp.verify(credential_id, otp)
        except OtpError as exc:
            raise otp_error(exc) from exc
        try:
            signer = await token_signer(self.registry, credential_id, pin)
            signed = [await sign_pdf(signer, data, level=Level(level),
                                     timestamp_url=timestamp_url) for data in documents]
        except PdfRefused as exc:
            raise RpcError(ErrorCode.BAD_REQUEST, str(exc)) from exc
        log.info("signed %d PDF(s) with %s for %s", len(signed), credential_id, origin)
        return signed


def split_credential(credential_id: str) -> tuple[str, str]:
    """'TOKEN_ID/KEY_ID' -> (token id, key id)."""
    token_id, sep, key_id = credential_id.rpartition("/")
    if not sep or not token_id or not key_id:
        raise RpcError(ErrorCode.INVALID_PARAMS, "credentialID is tokenID/keyID")
    return token_id, key_id


def _hash_algorithm(hashes: list[bytes]) -> HashAlgorithm:
    """The hash algorithm from the digest length (CSC v1 authorize does not name it)."""
    if not hashes or len({len(h) for h in hashes}) != 1 or len(hashes[0]) not in _BY_LENGTH:
        raise RpcError(ErrorCode.BAD_REQUEST, "hashes: SHA-256/384/512 digests, one length")
    return _BY_LENGTH[len(hashes[0])]


def _sad_hash(sad: str) -> str:
    return hashlib.sha256(sad.encode()).hexdigest()
