"""The second factor before a page may present the PIN or PUK to a token, or change
what authenticates the signer (SECURITY #33, #35).

`pin/change`, `pin/unblock`, `otp/enrol` and `enroll/generate` present the PIN or PUK,
change a key, or replace the second factor. A page may call them only on a connection
that proved, for that token, one of:

- a current TOTP code of a credential on the token (the factor that exists);
- an SMS code the signature service sent to the signer's phone for exactly this
  purpose (bound to `ground.binding.token_management_hash(token_id)`), which serves a
  first-time signer, who has no other factor yet;
- a confirmation a person gave outside the page (`qsign agent approve CODE`).

The proof is checked before the card sees anything, so a page that knows the PIN but
not the factor can neither use the PIN nor burn its tries. It gives the connection a
grant for that token for GRANT_SECONDS; the grant dies with the connection (and so
with a revoked pairing, whose sockets are closed). The methods are also throttled per
origin, and every grant and refusal is journaled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agent.audit import SecurityJournal
from agent.confirmations import Confirmations
from agent.errors import SecondFactorRequired, TokenCallsThrottled
from agent.identity.otp import OtpNotEnrolled, OtpStore
from agent.ratelimit import RateLimiter
from agent.signing import SigningService
from ground.binding import token_management_hash

GRANT_SECONDS = 300
# PIN/PUK-presenting calls per origin: a person retypes a PIN a few times a minute.
CALLS_PER_MINUTE = 12
BURST = 12.0


@dataclass
class Grants:
    """One connection's second-factor grants: token id -> monotonic expiry."""

    until: dict[str, float] = field(default_factory=dict)

    def give(self, token_id: str) -> None:
        self.until[token_id] = time.monotonic() + GRANT_SECONDS

    def holds(self, token_id: str) -> bool:
        return self.until.get(token_id, 0.0) > time.monotonic()


class SecondFactor:
    def __init__(self, signing: SigningService, otp_store: OtpStore,
                 confirmations: Confirmations, journal: SecurityJournal) -> None:
        self.signing = signing
        self.otp_store = otp_store
        self.confirmations = confirmations
        self.journal = journal
        self.limiter = RateLimiter(CALLS_PER_MINUTE, burst=BURST)

    def throttle(self, origin: str) -> None:
        """A token bucket per origin over every PIN/PUK-presenting call and proof."""
        wait = self.limiter.take(origin)
        if wait:
            raise TokenCallsThrottled(int(wait) + 1)

    async def prove(self, *, origin: str, token_id: str, grants: Grants,
                    otp: str | None, otp_session: str | None, credential_id: str | None,
                    confirmation: str | None) -> str:
        """Check one proof (see the module docstring) and grant the connection the
        token. Answers the kind of proof: "sms", "totp" or "confirmation"."""
        self.throttle(origin)
        try:
            if otp is None:
                self.confirmations.require(
                    origin=origin, action="second-factor", subject=token_id,
                    description=f"use the PIN or PUK of token {token_id} (change or unblock "
                                "the PIN, enrol an authenticator, make a key) for 5 minutes",
                    presented=confirmation)
                kind = "confirmation"
            elif otp_session is not None:
                await self.signing.check_otp(token_id, otp, otp_session,
                                             [token_management_hash(token_id)], sync=True)
                kind = "sms"
            else:
                account = self._totp_account(token_id, credential_id)
                await self.signing.check_otp(account, otp, None, [], sync=True)
                kind = "totp"
        except Exception as exc:
            self.journal.record("second-factor", origin=origin, subject=token_id,
                                outcome=f"refused: {type(exc).__name__}")
            raise
        grants.give(token_id)
        self.journal.record("second-factor", origin=origin, subject=token_id,
                            outcome=f"granted ({kind})")
        return kind

    def _totp_account(self, token_id: str, credential_id: str | None) -> str:
        if credential_id is not None:
            if not credential_id.startswith(token_id + "/"):
                raise OtpNotEnrolled(credential_id)
            return credential_id
        accounts = self.otp_store.accounts(token_id + "/")
        if not accounts:
            raise OtpNotEnrolled(token_id)
        return accounts[0]  # one authenticator per token in practice; credentialID picks

    def require(self, *, origin: str, token_id: str, grants: Grants) -> None:
        """Before a call presents the PIN or PUK to `token_id`: throttle, then the grant."""
        self.throttle(origin)
        if not grants.holds(token_id):
            raise SecondFactorRequired(token_id)
