"""The agent's aiohttp application: `create_app(config)` and `serve(config)`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.resources
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from agent import systemd
from agent.audit import SecurityJournal
from agent.config import KEYS, AgentConfig
from agent.confirmations import Confirmations
from agent.discovery import agent_id
from agent.identity.enrolment import EnrolmentService
from agent.identity.otp import OtpStore, TotpVerifier
from agent.identity.sms import HttpSmsOtpProvider
from agent.issuers import IssuerChain
from agent.journal import SignatureJournal
from agent.metrics import (
    METRICS,
    AgentMetrics,
    MeteredSigning,
    metrics_endpoint,
    metrics_middleware,
)
from agent.policy import SadIssuer
from agent.protocol.approve import add_approval_routes
from agent.protocol.csc import add_csc_routes, bearer_token
from agent.protocol.gate import GATE, SOCKETS, Gate, host_check
from agent.protocol.origins import ORIGIN_SOCKETS, OriginSockets, revocation_sweep, sweep_once
from agent.protocol.ws import close_sockets, pair, websocket
from agent.ratelimit import RateLimiter
from agent.secondfactor import SecondFactor
from agent.signing import SigningService
from agent.state import AgentState
from agent.tokens.registry import TokenRegistry
from ground import __version__
from ground.http_guard import GuardedSite, GuardLimits, HttpGuard

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1")
AGENT_ID = web.AppKey("agent_id", str)
STARTED = web.AppKey("started", float)  # time.monotonic() at create_app


def make_registry(config: AgentConfig) -> TokenRegistry:
    from agent.tokens.pkcs11 import Pkcs11Module, default_module_paths

    paths = (config.pkcs11_modules if config.pkcs11_modules is not None
             else default_module_paths())
    return TokenRegistry(pcsc=config.pcsc, pkcs11_modules=[Pkcs11Module(p) for p in paths])


async def health(request: web.Request) -> web.Response:
    """GET /v1/health: liveness and counts, nothing personal (no origins, no serials).
    No CORS header: a page cannot read it; monitoring and `qsign fleet` can."""
    gate = request.app[GATE]
    return web.json_response({
        "status": "ok", "version": __version__, "id": request.app[AGENT_ID],
        "uptime_seconds": round(time.monotonic() - request.app[STARTED], 1),
        "tokens": len(gate.registry.tokens()), "connections": gate.connections,
        "max_connections": gate.config.max_connections,
        "metrics": gate.config.metrics, "discovery": gate.config.discovery,
    }, headers={"Cache-Control": "no-store"})


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
    # Metrics outermost, so that requests the Host check refuses are counted too.
    middlewares = [host_check]
    if config.metrics:
        middlewares.insert(0, metrics_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=config.max_message_bytes)
    app[AGENT_ID] = agent_id(config.state_dir)
    app[STARTED] = time.monotonic()
    state = AgentState(config.state_dir)
    tokens = registry if registry is not None else make_registry(config)
    # One file for the journal, the SADs and the OTP state: one fsync per call.
    journal = SignatureJournal(config.state_dir)
    otp_store = OtpStore(journal.db, legacy=config.state_dir / "otp.sqlite")
    sads = SadIssuer(journal.db)
    sms = HttpSmsOtpProvider(config.portal_url, token_file=config.portal_token_file) \
        if config.portal_url else None
    metrics = AgentMetrics(__version__) if config.metrics else None
    issuers = IssuerChain(config.ca_url, config.state_dir)
    signing_args = (tokens, TotpVerifier(otp_store), sads, journal, config.timestamp_url)
    signing = (SigningService(*signing_args, sms=sms, otp_mode=config.otp_mode,
                              issuers=issuers) if metrics is None else
               MeteredSigning(metrics, *signing_args, sms=sms, otp_mode=config.otp_mode,
                              issuers=issuers))
    if metrics is not None:
        app[METRICS] = metrics
    confirmations = Confirmations(state)
    enrolment = EnrolmentService(tokens, journal.db, config.ca_url, confirmations)
    second_factor = SecondFactor(signing, otp_store, confirmations,
                                 SecurityJournal(journal.db))
    app[GATE] = Gate(config, state, tokens, RateLimiter(config.requests_per_minute), signing,
                     enrolment, second_factor, issuers)
    app[SOCKETS] = set()
    app[ORIGIN_SOCKETS] = OriginSockets(journal, sads)
    if metrics is not None:
        gate = app[GATE]
        metrics.gauge("qsign_agent_tokens", "Tokens present now.",
                      lambda: len(tokens.tokens()))
        metrics.gauge("qsign_agent_connections", "Open WebSocket connections.",
                      lambda: gate.connections)

    async def count_token_events(metrics: AgentMetrics) -> None:
        events = tokens.subscribe()
        try:
            while True:
                metrics.token_events.inc((await events.get()).kind.value)
        finally:
            tokens.unsubscribe(events)

    async def registry_lifecycle(app: web.Application) -> AsyncIterator[None]:
        counting = (asyncio.create_task(count_token_events(metrics), name="token-metrics")
                    if metrics is not None else None)
        await asyncio.sleep(0)  # subscribed before start(): the first insertions count
        await tokens.start()
        yield
        if counting is not None:
            counting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await counting
        await tokens.stop()
        if sms is not None:
            await sms.close()
        for closable in (state, otp_store, sads, journal):
            closable.close()

    app.cleanup_ctx.append(registry_lifecycle)
    app.cleanup_ctx.append(revocation_sweep)  # stopped before the databases close
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/v1/ws", websocket)
    app.router.add_post("/v1/pair", pair)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/qsign.js", client_script)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_endpoint)
    add_csc_routes(app, bearer_token(config.state_dir))
    add_approval_routes(app, config.state_dir, config.port)  # the local pairing page
    return app


def guard_limits(config: AgentConfig) -> GuardLimits:
    """The agent's connection keys as the HTTP guard's limits (qsign/http_guard.py): a
    request's head and its body each within their seconds, not extended by the bytes
    sent; the agent listens on loopback only, so every client shares one address and
    the cap in all is also the cap per address."""
    return GuardLimits(
        header_timeout=config.header_timeout_seconds,
        header_max=config.header_timeout_seconds,
        body_timeout=config.body_timeout_seconds, body_max=config.body_timeout_seconds,
        idle_timeout=config.idle_timeout_seconds,
        max_per_address=config.max_tcp_connections,
        max_connections=config.max_tcp_connections)


async def serve(config: AgentConfig,
                reload: Callable[[], AgentConfig] | None = None) -> None:
    """Listen on 127.0.0.1 and ::1 at the configured port (or on the loopback sockets
    systemd passes, sd_listen_fds(3)) until SIGTERM / SIGINT; advertise over mDNS when
    the policy enables discovery. Every connection is bounded (qsign/http_guard.py,
    `guard_limits`). SIGHUP calls `reload` and applies its allowed origins: an origin it
    drops loses its sockets and SADs at once; other keys need a restart."""
    passed = systemd.listen_sockets()
    hosts = [systemd.check_loopback(sock, config.port) for sock in passed]
    app = create_app(config)
    guard = HttpGuard(guard_limits(config))  # one guard, one cap for every site
    runner = web.AppRunner(app, keepalive_timeout=config.idle_timeout_seconds)
    await runner.setup()
    bound = []
    for sock, host in zip(passed, hosts, strict=True):
        await GuardedSite(runner, guard, sock=sock).start()
        bound.append(f"{host} (socket activation)")
    for host in () if passed else LOOPBACK:
        site = GuardedSite(runner, guard, host, config.port)
        try:
            await site.start()
            bound.append(host)
        except OSError as exc:
            await site.stop()
            log.warning("cannot listen on %s:%d: %s", host, config.port, exc)
    if not bound:
        await runner.cleanup()
        raise OSError(f"cannot listen on loopback port {config.port}")
    print(f"qsign agent on {', '.join(bound)} port {config.port}", flush=True)
    advertising = None
    if config.discovery:
        advertising = asyncio.create_task(_advertise(config, app), name="discovery")
    systemd.notify("READY=1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloading: set[asyncio.Task[None]] = set()
    if reload is not None:
        def on_hangup() -> None:
            task = asyncio.create_task(_reload(app, reload), name="reload")
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    await stop.wait()
    systemd.notify("STOPPING=1")
    if advertising is not None:
        advertising.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await advertising
    await runner.cleanup()


async def _reload(app: web.Application, reload: Callable[[], AgentConfig]) -> None:
    """SIGHUP: the configuration read again; its allowed origins replace the running
    ones (systemd's ExecReload). A broken file changes nothing."""
    # sd_notify(3): RELOADING=1 with the CLOCK_MONOTONIC time, then READY=1 when done.
    systemd.notify("RELOADING=1\nMONOTONIC_USEC="
                   f"{time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
    try:
        fresh = await asyncio.to_thread(reload)
    except Exception as exc:  # ConfigError, OSError: keep the running configuration
        log.error("reload refused, the running configuration stays: %s", exc)
        systemd.notify("READY=1")
        return
    gate = app[GATE]
    dropped = set(gate.config.allowed_origins) - set(fresh.allowed_origins)
    gate.config = dataclasses.replace(gate.config, allowed_origins=fresh.allowed_origins)
    ignored = [k for k in KEYS if k != "allowed_origins"
               and getattr(fresh, k) != getattr(gate.config, k)]
    log.warning("configuration reloaded: %d allowed origin(s), %d dropped%s",
                len(fresh.allowed_origins), len(dropped),
                f"; changes to {', '.join(ignored)} need a restart" if ignored else "")
    await sweep_once(app)
    systemd.notify("READY=1")


async def _advertise(config: AgentConfig, app: web.Application) -> None:
    """Advertise `_qsign._tcp` and keep the token count in the TXT records current;
    say goodbye when cancelled. A failure here is logged: signing goes on without it."""
    from agent.discovery import Advertiser, DiscoveryError

    registry = app[GATE].registry
    events = registry.subscribe()
    try:
        advertiser = Advertiser(agent=app[AGENT_ID], version=__version__, port=config.port,
                                interfaces=config.discovery_interfaces)
        await advertiser.start(len(registry.tokens()))
    except DiscoveryError as exc:
        registry.unsubscribe(events)
        log.error("discovery is off: %s", exc)
        return
    try:
        while True:
            await events.get()
            await advertiser.update(len(registry.tokens()))
    finally:
        registry.unsubscribe(events)
        await advertiser.stop()
