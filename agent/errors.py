"""Domain errors of the daemon layer, beside the token layer's (agent.tokens.errors);
agent.protocol.errors maps both to the wire, once."""

from __future__ import annotations


class SecondFactorRequired(Exception):
    """The connection has not proved a second factor for this token (or it expired)."""

    def __init__(self, token_id: str) -> None:
        super().__init__("prove the second factor for this token first")
        self.token_id = token_id


class TokenCallsThrottled(Exception):
    """Too many PIN or PUK presenting calls from one origin."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("too many PIN or PUK requests from this origin")
        self.retry_after_seconds = retry_after_seconds


class SigningRequestInvalid(Exception):
    """Hashes or documents that cannot be authorised as asked (count, length, repeats)."""


class SadRefused(Exception):
    """A SAD that does not (or no longer) authorise these signatures; `reason` when the
    SAD itself was refused (unknown, expired, spent, other origin or hashes)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
