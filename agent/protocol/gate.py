"""Who may talk to the agent: the gate every route consults (configuration, pairings,
limits, the services behind the wire), and the Host check (DNS rebinding)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from agent.config import AgentConfig
from agent.identity.enrolment import EnrolmentService
from agent.issuers import IssuerChain
from agent.ratelimit import RateLimiter
from agent.secondfactor import SecondFactor
from agent.signing import SigningService
from agent.state import AgentState
from agent.tokens.registry import TokenRegistry


@dataclass
class Gate:
    """Everything the wire needs to decide who may talk: config, pairings, limits."""

    config: AgentConfig
    state: AgentState
    registry: TokenRegistry
    limiter: RateLimiter
    signing: SigningService
    enrolment: EnrolmentService
    second_factor: SecondFactor
    issuers: IssuerChain  # completes signer certificates' chains from the agent's CA
    connections: int = 0
    # Pairing codes are for people: a few per origin and minute is plenty.
    pairing_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(6, burst=3))

    @property
    def hosts(self) -> frozenset[str]:
        port = self.config.port
        return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})

    def origin_allowed(self, origin: str) -> bool:
        return origin in self.config.allowed_origins or self.state.is_paired(origin)

    async def origin_still_allowed(self, origin: str) -> bool:
        """`origin_allowed` before each message of an open socket: the configuration
        (a policy reload replaces it) in memory, the pairings (which `qsign agent
        revoke` changes from another process) from the state, off the event loop."""
        return origin in self.config.allowed_origins or await asyncio.to_thread(
            self.state.is_paired, origin)


GATE = web.AppKey("gate", Gate)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")


@web.middleware
async def host_check(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
    """DNS rebinding: only the loopback names of our own port (SECURITY #4)."""
    if request.headers.get("Host", "") not in request.app[GATE].hosts:
        return web.json_response({"error": "HOST_NOT_ALLOWED"}, status=421)
    return await handler(request)
