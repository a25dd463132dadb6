"""A loopback HTTP server that implements the portal's SMS OTP contract
(portal/API.md "SMS OTP"), for the agent's tests: sessions bound to hashes, 6-digit
codes valid 5 minutes, single use, attempts counted then locked, sends throttled. Codes
go to an outbox instead of a phone. `now` is settable, so expiry needs no sleeping.
Like the portal, it answers only the agent that presents its credential
(`Authorization: Bearer`, the token in `token_file` once started).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

CODE_TTL = 300
MAX_ATTEMPTS = 5
SENDS_PER_SESSION = 3


@dataclass
class OtpSession:
    hashes: list[str]
    phone: str
    code: str | None = None
    expires_at: float = 0.0
    used: bool = False
    attempts: int = 0
    sends: int = 0


@dataclass
class FakePortal:
    sessions: dict[str, OtpSession] = field(default_factory=dict)
    outbox: list[tuple[str, str]] = field(default_factory=list)  # (phone, code)
    offset: float = 0.0  # added to the clock: expiry without waiting
    calls: list[str] = field(default_factory=list)
    port: int | None = None  # None: any free port
    server: TestServer | None = None
    agent_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token_file: Path | None = None  # the agent's portal_token_file, written by start()

    def now(self) -> float:
        return time.time() + self.offset

    def open_session(self, hashes: list[bytes], phone: str = "+33612345678") -> str:
        """What the portal's sign/prepare does: an OTP session for these hashes."""
        session = secrets.token_urlsafe(24)
        self.sessions[session] = OtpSession([base64.b64encode(h).decode() for h in hashes],
                                            phone)
        return session

    def last_code(self) -> str:
        return self.outbox[-1][1]

    @property
    def url(self) -> str:
        port = self.server.port if self.server is not None else self.port
        assert port is not None, "start() first, or give a port"
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="sms-portal-"))
        self.token_file = directory / "agent-portal.token"
        self.token_file.write_text(self.agent_token + "\n")
        app = web.Application()
        app.router.add_post("/api/v1/sms-otp/send", self._send)
        app.router.add_post("/api/v1/sms-otp/verify", self._verify)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        await self.server.start_server()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self.token_file is not None:
            shutil.rmtree(self.token_file.parent, ignore_errors=True)

    # The contract ---------------------------------------------------------------------

    async def _session(self, request: web.Request) -> tuple[dict[str, Any], OtpSession]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.agent_token.encode()):
            raise _error(401, "UNAUTHORIZED")
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("hashes"), list):
            raise _error(400, "BAD_REQUEST")
        session = self.sessions.get(body.get("session", ""))
        if session is None:
            raise _error(404, "SESSION_UNKNOWN")
        if body["hashes"] != session.hashes:
            raise _error(409, "HASHES_MISMATCH")
        return body, session

    async def _send(self, request: web.Request) -> web.Response:
        self.calls.append("send")
        _, session = await self._session(request)
        if session.sends >= SENDS_PER_SESSION:
            raise _error(429, "OTP_THROTTLED", retryAfter=60)
        session.sends += 1
        session.code = f"{secrets.randbelow(10**6):06d}"
        session.expires_at = self.now() + CODE_TTL
        session.used = False
        self.outbox.append((session.phone, session.code))
        return web.json_response({"phoneMasked": "+33 6•• •• •• 78", "expiresIn": CODE_TTL})

    async def _verify(self, request: web.Request) -> web.Response:
        self.calls.append("verify")
        body, session = await self._session(request)
        code = body.get("code")
        if session.code is None or not isinstance(code, str):
            raise _error(404, "SESSION_UNKNOWN")
        if session.attempts >= MAX_ATTEMPTS:
            raise _error(423, "OTP_LOCKED")
        right = hmac.compare_digest(code.encode(), session.code.encode())
        if right and session.used:
            raise _error(409, "OTP_REPLAYED")
        if right and self.now() >= session.expires_at:
            raise _error(410, "OTP_EXPIRED")
        if not right:
            session.attempts += 1
            if session.attempts >= MAX_ATTEMPTS:
                raise _error(423, "OTP_LOCKED")
            raise _error(401, "OTP_INVALID", attemptsLeft=MAX_ATTEMPTS - session.attempts)
        session.used = True
        return web.json_response({"verified": True})


def _error(status: int, code: str, **extra: Any) -> web.HTTPException:
    """portal/API.md's error shape: {"error": CODE, "message": ..., extra fields}."""
    return _Http(status, {"error": code, "message": code.lower(), **extra})


class _Http(web.HTTPException):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        super().__init__(text=json.dumps(body), content_type="application/json")
