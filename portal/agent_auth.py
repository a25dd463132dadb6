"""The agent's credential at the portal's SMS OTP routes (portal/API.md "SMS OTP").

`/api/v1/sms-otp/send` and `/verify` text and spend the codes that authorise signatures:
only the signers' agents may call them. Each agent presents a bearer token (RFC 6750
§2.1) from its `portal_token_file`; the portal's configuration lists the SHA-256 of each
accepted token (`agent_token_sha256`), so the portal's files hold no usable secret. A
token is random (at least 128 bits), so one unsalted hash is enough to compare it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from portal.errors import Code, PortalError

MIN_TOKEN_CHARS = 22  # 128 bits of base64url


def token_digest(token: str) -> str:
    """How a token is listed in `agent_token_sha256`: SHA-256 of its UTF-8, in hex."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_agent_token() -> tuple[str, str]:
    """A fresh agent credential (256 bits) and the digest the portal lists for it."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def require_agent(headers: Mapping[str, str], accepted: tuple[str, ...]) -> None:
    """Raise UNAUTHORIZED unless `Authorization: Bearer <token>` names an accepted agent;
    with no credential configured, everyone is refused."""
    if not accepted:
        raise PortalError(Code.UNAUTHORIZED, "no agent credential is configured "
                          "(portal.agent_token_sha256)", reason="agent-not-configured")
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or len(token) < MIN_TOKEN_CHARS or len(token) > 512:
        raise PortalError(Code.UNAUTHORIZED, "the agent's credential is required",
                          reason="agent-credential")
    presented = token_digest(token).encode()
    found = False
    for digest in accepted:  # every entry compared: the time says nothing about which
        found |= hmac.compare_digest(presented, digest.encode())
    if not found:
        raise PortalError(Code.UNAUTHORIZED, "the agent's credential is required",
                          reason="agent-credential")
