"""Domain errors of the token layer. Each carries the data a caller needs.

Low-level codes are mapped to these in exactly one place per backend:
status words in `agent.tokens.apdu.error_for_sw`, CKR codes in
`agent.tokens.pkcs11.error_for_pkcs11`.
"""

from __future__ import annotations


class TokenError(Exception):
    """Base of every token-layer failure."""


class CardReset(Exception):
    """A transport's signal, not a domain error: the card was reset under us (another
    application, a power cycle) and the transport reconnected. The PIN is no longer
    verified; `PivToken` turns this into PinStateLost or a retry."""


class TokenNotFound(TokenError):
    def __init__(self, token_id: str) -> None:
        super().__init__(f"no token {token_id!r}")
        self.token_id = token_id


class TokenRemoved(TokenError):
    """The token left its reader (or its module) during or before the operation."""

    def __init__(self, detail: str = "token removed") -> None:
        super().__init__(detail)


class CommunicationError(TokenError):
    """The reader, pcscd or the PKCS#11 module failed; the token may still be there."""


class InvalidPin(TokenError):
    def __init__(self, attempts_left: int | None) -> None:
        left = "unknown" if attempts_left is None else str(attempts_left)
        super().__init__(f"wrong PIN ({left} attempts left)")
        self.attempts_left = attempts_left


class InvalidPuk(TokenError):
    def __init__(self, attempts_left: int | None) -> None:
        left = "unknown" if attempts_left is None else str(attempts_left)
        super().__init__(f"wrong PUK ({left} attempts left)")
        self.attempts_left = attempts_left


class PinBlocked(TokenError):
    def __init__(self) -> None:
        super().__init__("PIN blocked; unblock it with the PUK")


class PukBlocked(TokenError):
    def __init__(self) -> None:
        super().__init__("PUK blocked; the token must be reset")


class PinFormatInvalid(TokenError):
    """The PIN does not fit the token's rules; nothing was sent to the token."""


class NotAuthenticated(TokenError):
    """The operation needs the PIN (or the management key) first."""


class PinStateLost(NotAuthenticated):
    """The card was reset (another application, a power cycle): verify the PIN again."""

    def __init__(self) -> None:
        super().__init__("the card was reset; the PIN must be entered again")


class ProtectedAuthenticationPath(TokenError):
    """The token takes its PIN on its own pin pad; a PIN must not be sent to it."""


class UnsupportedMechanism(TokenError):
    """The key or token cannot do the requested algorithm."""


class KeyNotFound(TokenError):
    def __init__(self, key_ref: str) -> None:
        super().__init__(f"no key {key_ref!r} on this token")
        self.key_ref = key_ref


class InvalidInput(TokenError):
    """The caller's data does not fit (digest length, certificate size, ...)."""


class CredentialIdInvalid(InvalidInput):
    """A credential id is not TOKEN_ID/KEY_ID."""

    def __init__(self) -> None:
        super().__init__("credentialID is tokenID/keyID")


class TokenResponseError(TokenError):
    """The token answered something malformed or unexpected (treated as hostile)."""


class OperationFailed(TokenError):
    """The token refused the command for a reason with no better mapping."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
