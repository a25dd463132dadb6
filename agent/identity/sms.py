"""The SMS OTP provider over HTTP: the agent relays a signer's SMS code to the signature
service (the portal) that sent it, exactly as portal/API.md "SMS OTP" specifies:

    POST {portal_url}/api/v1/sms-otp/send    {"session", "hashes": [b64]}
         -> {"phoneMasked": str, "expiresIn": 300}
    POST {portal_url}/api/v1/sms-otp/verify  {"session", "code", "hashes": [b64]}
         -> {"verified": true}

and errors `{"error": CODE, "message", ...}` with the codes OTP_INVALID (attemptsLeft),
OTP_EXPIRED, OTP_REPLAYED, OTP_THROTTLED (retryAfter), OTP_LOCKED, HASHES_MISMATCH,
SESSION_UNKNOWN, each mapped here, once, to the agent's OtpError classes. Anything else
(no answer, a timeout, a redirect, a 5xx, a body outside the contract) is
`OtpServiceUnavailable`: nothing was verified, and the caller never goes on to the PIN.

The URL comes from the agent's configuration only (a page must not choose who checks
its OTP); redirects are not followed and TLS is verified (SECURITY #32). Every request
carries the agent's credential, `Authorization: Bearer <token>` (RFC 6750 §2.1) read from
`portal_token_file`: the portal answers these routes to its agents only (SECURITY #43).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from agent.identity.otp import (
    OtpError,
    OtpExpired,
    OtpHashesMismatch,
    OtpInvalid,
    OtpLocked,
    OtpReplayed,
    OtpServiceUnavailable,
    OtpSessionUnknown,
    OtpThrottled,
    SmsChallenge,
)

log = logging.getLogger(__name__)

SEND_PATH = "/api/v1/sms-otp/send"
VERIFY_PATH = "/api/v1/sms-otp/verify"
MAX_ANSWER_BYTES = 64 * 1024
MAX_SESSION_CHARS = 512
DEFAULT_TIMEOUT_SECONDS = 10.0


def _number(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def error_from_answer(body: dict[str, Any]) -> OtpError:
    """portal/API.md error codes -> the agent's OTP errors (the one mapping)."""
    code = body.get("error")
    if code == "OTP_INVALID":
        return OtpInvalid(_number(body, "attemptsLeft"),
                          _number(body, "retryAfter") or 0)
    if code == "OTP_EXPIRED":
        return OtpExpired()
    if code == "OTP_REPLAYED":
        return OtpReplayed()
    if code == "OTP_THROTTLED":
        return OtpThrottled(max(1, _number(body, "retryAfter") or 1))
    if code == "OTP_LOCKED":
        return OtpLocked(_number(body, "retryAfter"))
    if code == "HASHES_MISMATCH":
        return OtpHashesMismatch()
    if code == "SESSION_UNKNOWN":
        return OtpSessionUnknown()
    return OtpServiceUnavailable(f"error {str(code)[:40]!r} outside the contract")


class HttpSmsOtpProvider:
    """`SmsOtpProvider` for the portal at `portal_url` (e.g. https://sign.example.org)."""

    def __init__(self, portal_url: str, *, token_file: Path | None = None,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not portal_url.startswith(("http://", "https://")):
            raise ValueError("portal_url: an http(s) URL")
        self.portal_url = portal_url.rstrip("/")
        self.token_file = token_file
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, session: str, hashes: Sequence[bytes]) -> SmsChallenge:
        """Ask the portal to text a code for exactly `hashes` of `session`."""
        body = await self._post(SEND_PATH, {"session": _session(session),
                                            "hashes": _b64(hashes)})
        phone, expires = body.get("phoneMasked"), _number(body, "expiresIn")
        if not isinstance(phone, str) or len(phone) > 64 or not expires:
            raise OtpServiceUnavailable("send: an answer outside the contract")
        return SmsChallenge(phone, expires)

    async def verify(self, session: str, code: str, hashes: Sequence[bytes]) -> None:
        """Accept `code` once, for `hashes` only; raise an OtpError otherwise."""
        typed = code.replace(" ", "")
        if not typed.isascii() or not typed.isdigit() or not 4 <= len(typed) <= 10:
            raise OtpInvalid(None)  # cannot be a code: not sent anywhere
        body = await self._post(VERIFY_PATH, {"session": _session(session), "code": typed,
                                              "hashes": _b64(hashes)})
        if body.get("verified") is not True:
            raise OtpServiceUnavailable("verify: an answer outside the contract")

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = self.portal_url + path
        headers = self._credential()
        try:
            async with self._session.post(url, json=payload, headers=headers,
                                          allow_redirects=False) as answer:
                raw = await answer.content.read(MAX_ANSWER_BYTES + 1)
                status = answer.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("SMS OTP service %s: %s", url, type(exc).__name__)
            raise OtpServiceUnavailable(type(exc).__name__) from exc
        if len(raw) > MAX_ANSWER_BYTES:
            raise OtpServiceUnavailable(f"{path}: answer too large")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            log.warning("SMS OTP service %s: HTTP %d, not a JSON object", url, status)
            raise OtpServiceUnavailable(f"{path}: HTTP {status}, not JSON")
        if status == 200:
            return body
        if status == 401 and body.get("error") == "UNAUTHORIZED":
            log.error("SMS OTP service %s refused the agent's credential "
                      "(agent.portal_token_file)", url)
            raise OtpServiceUnavailable(f"{path}: the agent's credential was refused")
        error = error_from_answer(body) if 400 <= status < 500 else \
            OtpServiceUnavailable(f"{path}: HTTP {status}")
        if isinstance(error, OtpServiceUnavailable):
            log.warning("SMS OTP service %s: HTTP %d %s", url, status, body.get("error"))
        raise error

    def _credential(self) -> dict[str, str]:
        """The bearer header; read at each call, so a replaced file takes effect."""
        if self.token_file is None:
            return {}
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            log.error("agent.portal_token_file %s: %s", self.token_file, type(exc).__name__)
            raise OtpServiceUnavailable("the agent's credential cannot be read") from exc
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            log.error("agent.portal_token_file %s holds no token", self.token_file)
            raise OtpServiceUnavailable("the agent's credential cannot be read")
        return {"Authorization": f"Bearer {token}"}


def _session(session: str) -> str:
    if not (isinstance(session, str) and 0 < len(session) <= MAX_SESSION_CHARS
            and session.isascii() and session.isprintable()):
        raise OtpSessionUnknown()
    return session


def _b64(hashes: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]
