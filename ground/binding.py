"""What a second factor is bound to when it authorises something other than document
hashes. The agent and the signature service compute the same value, so an SMS code the
service sends for one purpose cannot be spent on another (SECURITY #33, #35).
"""

from __future__ import annotations

import hashlib

# Versioned domain separation: a document's SHA-256 can never equal one of these.
_TOKEN_MANAGEMENT = b"qsign token-management v1\x00"


def token_management_hash(token_id: str) -> bytes:
    """The 'hash' an SMS code authorising PIN/PUK use and key or second-factor changes
    on one token is bound to: SHA-256 over a fixed label and the agent's token id."""
    return hashlib.sha256(_TOKEN_MANAGEMENT + token_id.encode()).digest()
