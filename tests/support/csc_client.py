"""A program's side of the agent's CSC facade: how it supplies the two factors to
pyHanko's CSCSigner (its extension point, `CSCAuthorizationManager`)."""

from __future__ import annotations

import aiohttp
import pyotp
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
)


class TotpAuthorization(CSCAuthorizationManager):
    """credentials/authorize with the card's PIN and the current code of `totp`."""

    def __init__(self, session_info: CSCServiceSessionInfo, credential_info: CSCCredentialInfo,
                 session: aiohttp.ClientSession, totp: pyotp.TOTP, pin: str) -> None:
        super().__init__(session_info, credential_info)
        self.session = session
        self.totp = totp
        self.pin = pin

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        request = self.format_csc_auth_request(pin=self.pin, otp=self.totp.now(),
                                               hash_b64s=hash_b64s)
        async with self.session.post(
                self.csc_session_info.endpoint_url("credentials/authorize"),
                headers=self.auth_headers, json=request, raise_for_status=True) as response:
            return self.parse_csc_auth_response(await response.json())
