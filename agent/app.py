"""The agent's aiohttp application: `create_app(config)` and `serve(config)`."""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from agent.config import AgentConfig
from agent.identity.otp import OtpStore, TotpVerifier
from agent.journal import SignatureJournal
from agent.policy import SadIssuer
from agent.protocol.csc import add_csc_routes, bearer_token
from agent.protocol.ws import (
    GATE,
    SOCKETS,
    Gate,
    RateLimiter,
    close_sockets,
    host_check,
    pair,
    websocket,
)
from agent.signing import SigningService
from agent.state import AgentState
from agent.tokens.registry import TokenRegistry

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1")


def make_registry(config: AgentConfig) -> TokenRegistry:
    from agent.tokens.pkcs11 import Pkcs11Module, default_module_paths

    paths = (config.pkcs11_modules if config.pkcs11_modules is not None
             else default_module_paths())
    return TokenRegistry(pcsc=config.pcsc, pkcs11_modules=[Pkcs11Module(p) for p in paths])


async def health(request: web.Request) -> web.Response:
    gate = request.app[GATE]
    return web.json_response({"status": "ok", "tokens": len(gate.registry.tokens()),
                              "connections": gate.connections})


async def client_script(request: web.Request) -> web.Response:
    """GET /v1/qsign.js: the browser client (agent/web/qsign.js), an ES module.

    Public code with no secret in it, so no Origin check: an unpaired page needs it to
    call pair(). The Host check (middleware) still applies. `import()` of a module from
    another origin is a CORS fetch, hence `Access-Control-Allow-Origin: *` on this one
    static file only (no credentials; the API routes never answer `*`). `no-store`, so
    a page always runs the client of the agent that is running now.
    """
    source = importlib.resources.files("agent").joinpath("web/qsign.js").read_bytes()
    return web.Response(body=source, content_type="application/javascript", charset="utf-8",
                        headers={"Cache-Control": "no-store",
                                 "Access-Control-Allow-Origin": "*",
                                 "X-Content-Type-Options": "nosniff"})


def create_app(config: AgentConfig, registry: TokenRegistry | None = None) -> web.Application:
    app = web.Application(middlewares=[host_check], client_max_size=config.max_message_bytes)
    state = AgentState(config.state_dir)
    tokens = registry if registry is not None else make_registry(config)
    otp_store = OtpStore(config.state_dir / "otp.sqlite")
    sads = SadIssuer(config.state_dir / "sad.sqlite")
    journal = SignatureJournal(config.state_dir)
    signing = SigningService(tokens, TotpVerifier(otp_store), sads, journal,
                             config.timestamp_url)
    app[GATE] = Gate(config, state, tokens, RateLimiter(config.requests_per_minute), signing)
    app[SOCKETS] = set()

    async def registry_lifecycle(app: web.Application) -> AsyncIterator[None]:
        await tokens.start()
        yield
        await tokens.stop()
        for closable in (state, otp_store, sads, journal):
            closable.close()

    app.cleanup_ctx.append(registry_lifecycle)
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/v1/ws", websocket)
    app.router.add_post("/v1/pair", pair)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/qsign.js", client_script)
    add_csc_routes(app, bearer_token(config.state_dir))
    return app


async def serve(config: AgentConfig) -> None:
    """Listen on 127.0.0.1 and ::1 at the configured port until SIGTERM / SIGINT."""
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    bound = []
    for host in LOOPBACK:
        try:
            site = web.TCPSite(runner, host, config.port)
            await site.start()
            bound.append(host)
        except OSError as exc:
            log.warning("cannot listen on %s:%d: %s", host, config.port, exc)
    if not bound:
        await runner.cleanup()
        raise OSError(f"cannot listen on loopback port {config.port}")
    print(f"qsign agent on {', '.join(bound)} port {config.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
