"""`qsign tokens ...`: list and watch the tokens the agent can reach."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from agent.config import ConfigError, EffectiveConfig, Source, load_effective
from agent.confirmations import decide, forget_origin, pending_confirmations
from agent.discovery import DiscoveryError
from agent.identity.hotp import HotpSecretInvalid
from agent.state import AgentState, PairingError
from agent.systemd import ActivationError
from agent.tokens.errors import TokenError
from agent.tokens.model import Credential, PinStatus, TokenInfo
from agent.tokens.registry import TokenRegistry


def register(subparsers: Any) -> None:
    agent = subparsers.add_parser("agent", help="the local signing agent")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    p = agent_sub.add_parser("run", help="serve pages (WebSocket) and programs on loopback")
    p.add_argument("--config", type=Path, help="TOML configuration file "
                   "(default: ~/.config/qsign/agent.toml if present; the enterprise policy "
                   "/etc/qsign/agent.toml applies on top)")
    p.set_defaults(func=_agent_run)
    p = agent_sub.add_parser("config", help="the effective configuration and its sources")
    p.add_argument("--config", type=Path, help="the user's TOML file")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--effective", action="store_true",
                      help="every key's value and where it came from (the default)")
    mode.add_argument("--chromium-policy", action="store_true",
                      help="a Chromium managed policy (JSON) that lets the allowed origins "
                           "reach the agent on loopback (/etc/chromium/policies/managed/)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_agent_config)
    p = agent_sub.add_parser("approve", help="pair the origin that shows this code")
    p.add_argument("code", nargs="?")
    p.add_argument("--open", action="store_true",
                   help="print the address of the running agent's own approval page")
    p.add_argument("--config", type=Path)
    p.set_defaults(func=_agent_approve)
    p = agent_sub.add_parser("origins", help="list paired origins, or revoke one")
    p.add_argument("--revoke", metavar="ORIGIN")
    p.add_argument("--config", type=Path)
    p.set_defaults(func=_agent_origins)
    otp = agent_sub.add_parser("otp", help="one-time password devices of a credential")
    otp_sub = otp.add_subparsers(dest="otp_command", required=True)
    p = otp_sub.add_parser("hotp", help="use an OATH HOTP token (RFC 4226) as the second "
                           "factor of a credential; its secret (hex or base32, from the "
                           "token's seed file) is read from standard input")
    p.add_argument("credential", help="TOKEN_ID/KEY_ID (qsign tokens list)")
    p.add_argument("--counter", type=int, default=0,
                   help="the token's counter: the count of its next code (default 0)")
    p.add_argument("--digits", type=int, default=6, choices=[6, 7, 8])
    p.add_argument("--config", type=Path)
    p.set_defaults(func=_agent_otp_hotp)

    p = subparsers.add_parser("sign", help="sign PDF files (PAdES) with a key on a token")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--credential", required=True, help="TOKEN_ID/KEY_ID (qsign tokens list)")
    p.add_argument("--level", choices=["B-B", "B-T"], default="B-B")
    p.add_argument("--timestamp-url", help="RFC 3161 service for B-T (e.g. the CA's /tsa)")
    p.add_argument("--out-dir", type=Path, help="default: next to each input")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")
    p.add_argument("--module", action="append", default=None, metavar="PATH")
    p.add_argument("--no-pcsc", action="store_true")
    p.set_defaults(func=_sign)

    fleet = subparsers.add_parser("fleet", help="agents on the network (mDNS, _qsign._tcp)")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True)
    p = fleet_sub.add_parser("discover", help="list the agents that advertise themselves")
    p.add_argument("--interface", action="append", default=None, metavar="ADDR|NAME",
                   help="IPv4 address or interface name to browse on (repeatable; default: "
                        "the policy's discovery_interfaces, else every non-loopback one)")
    p.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS",
                   help="how long to listen for answers (default 3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_fleet_discover)

    tokens = subparsers.add_parser("tokens", help="hardware tokens the agent can reach")
    sub = tokens.add_subparsers(dest="tokens_command", required=True)
    for name, func, text in (("list", _list, "list tokens and their credentials"),
                             ("watch", _watch, "print token events as they happen")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--module", action="append", default=None, metavar="PATH",
                       help="PKCS#11 module (repeatable; default: OpenSC's and SoftHSM2's)")
        p.add_argument("--no-pcsc", action="store_true", help="ignore PC/SC readers")
        if name == "list":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)


def _registry(args: argparse.Namespace) -> TokenRegistry:
    from agent.tokens.pkcs11 import Pkcs11Module, default_module_paths

    paths = args.module if args.module is not None else default_module_paths()
    return TokenRegistry(pcsc=not args.no_pcsc,
                         pkcs11_modules=[Pkcs11Module(path) for path in paths])


def token_json(info: TokenInfo, status: PinStatus | None,
               credentials: list[Credential]) -> dict[str, Any]:
    return {
        "id": info.id,
        "label": info.label,
        "serial": info.serial,
        "manufacturer": info.manufacturer,
        "model": info.model,
        "reader": info.reader,
        "routes": [{"kind": r.kind.value, "reader": r.reader, "module": r.module,
                    "slot": r.slot} for r in info.routes],
        "protected_authentication_path": info.protected_authentication_path,
        "pin_retries": status.retries_left if status else None,
        "pin_blocked": status.blocked if status else None,
        "credentials": [{
            "id": c.id, "label": c.label, "key_type": c.key_type.value,
            "has_certificate": c.has_certificate, "pin_always": c.pin_always,
            "can_attest": c.can_attest,
        } for c in credentials],
    }


async def _describe(registry: TokenRegistry) -> list[dict[str, Any]]:
    described = []
    for info in registry.tokens():
        try:
            status = await registry.call(info.id, lambda t: t.pin_status())
            credentials = await registry.call(info.id, lambda t: t.credentials())
        except TokenError as exc:
            print(f"qsign: {info.id}: {exc}", file=sys.stderr)
            status, credentials = None, []
        described.append(token_json(info, status, credentials))
    return described


def _list(args: argparse.Namespace) -> int:
    async def run() -> list[dict[str, Any]]:
        async with _registry(args) as registry:
            return await _describe(registry)

    tokens = asyncio.run(run())
    if args.json:
        print(json.dumps(tokens, indent=2))
        return 0
    if not tokens:
        print("no tokens")
    for t in tokens:
        routes = ", ".join(r["kind"] for r in t["routes"])
        retries = "?" if t["pin_retries"] is None else t["pin_retries"]
        print(f"{t['id']}  {t['label']}  serial {t['serial']}  [{routes}]  "
              f"PIN tries left {retries}{' (blocked)' if t['pin_blocked'] else ''}")
        for c in t["credentials"]:
            print(f"  {c['id']}  {c['key_type']:<9} "
                  f"{'certificate' if c['has_certificate'] else 'no certificate'}"
                  f"{'  PIN per signature' if c['pin_always'] else ''}")
    return 0


def _watch(args: argparse.Namespace) -> int:
    async def run() -> None:
        async with _registry(args) as registry:
            events = registry.subscribe()
            for info in registry.tokens():
                print(json.dumps({"event": "present", "id": info.id, "label": info.label}),
                      flush=True)
            while True:
                event = await events.get()
                print(json.dumps({"event": event.kind.value, "id": event.token_id,
                                  "label": event.info.label if event.info else None}),
                      flush=True)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    return 0


def _sign(args: argparse.Namespace) -> int:
    import getpass

    from agent.pades import Level, PdfRefused, TokenSigner, sign_pdf, token_signer
    from ground.files import write_atomically

    pin = sys.stdin.readline().rstrip("\n") if args.pin_stdin else getpass.getpass("PIN: ")
    failures = 0

    async def run() -> None:
        async with _registry(args) as registry:
            signer = await token_signer(registry, args.credential, pin)
            try:
                await sign_each(signer)
            finally:
                signer.forget_pin()

    async def sign_each(signer: TokenSigner) -> None:
        nonlocal failures
        total = len(args.files)
        for index, path in enumerate(args.files, 1):
            out_dir = args.out_dir or path.parent
            target = out_dir / f"{path.stem}-signed.pdf"
            try:
                signed = await sign_pdf(signer, path.read_bytes(), level=Level(args.level),
                                        timestamp_url=args.timestamp_url)
            except (PdfRefused, OSError) as exc:
                failures += 1
                print(f"[{index}/{total}] {path.name}: refused: {exc}", file=sys.stderr)
                continue
            write_atomically(target, signed, 0o644)
            bar = "#" * (20 * index // total)
            print(f"[{bar:<20}] {index}/{total} {path.name} -> {target}", file=sys.stderr)

    try:
        asyncio.run(run())
    except PdfRefused as exc:
        print(f"qsign: error: {exc}", file=sys.stderr)
        return 2
    return 1 if failures else 0


def _effective(args: argparse.Namespace) -> EffectiveConfig:
    return load_effective(args.config)


def _agent_run(args: argparse.Namespace) -> int:
    import logging

    from agent.app import serve
    from ground.traffic import TRAFFIC

    effective = _effective(args)
    config = effective.config
    # The policy's log level when locked; else the file's, unless -v or QSIGN_LOG_LEVEL.
    from_command_line = args.verbose > 0 or bool(os.environ.get("QSIGN_LOG_LEVEL"))
    if config.log_level is not None and (
            effective.provenance["log_level"].source is Source.LOCKED
            or not from_command_line):
        level = TRAFFIC if config.log_level == "traffic" else config.log_level.upper()
        logging.getLogger().setLevel(level)
    asyncio.run(serve(config, reload=lambda: _effective(args).config))  # SIGHUP
    return 0


def _agent_config(args: argparse.Namespace) -> int:
    effective = _effective(args)
    if args.chromium_policy:
        origins = list(effective.config.allowed_origins)
        if not origins:
            raise ConfigError("agent.allowed_origins is empty: no origin to let through")
        # Chrome 146+ LoopbackNetworkAllowedForUrls; LocalNetworkAccessAllowedForUrls
        # (Chrome 139+) covered loopback before the split. URL patterns, one per origin.
        print(json.dumps({"LoopbackNetworkAllowedForUrls": origins,
                          "LocalNetworkAccessAllowedForUrls": origins}, indent=2))
        return 0
    if args.json:
        print(json.dumps({
            "policy": str(effective.policy.path) if effective.policy else None,
            "user": str(effective.user_path) if effective.user_path else None,
            "values": effective.to_json()}, indent=2))
        return 0
    print(f"policy: {effective.policy.path if effective.policy else '(none)'}")
    print(f"user:   {effective.user_path or '(none)'}")
    rows = [(key, _show(value), prov.describe()) for key, value, prov in effective.rows()]
    key_width = max(len(r[0]) for r in rows)
    value_width = min(48, max(len(r[1]) for r in rows))
    for key, value, where in rows:
        print(f"{key:<{key_width}}  {value:<{value_width}}  {where}")
    return 0


def _show(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fleet_discover(args: argparse.Namespace) -> int:
    from agent.discovery import browse

    if not 0 < args.timeout <= 600:
        raise ConfigError("--timeout: between 0 and 600 seconds")
    interfaces = args.interface
    if interfaces is None:
        interfaces = list(load_effective(None).config.discovery_interfaces)
    agents = asyncio.run(browse(interfaces, args.timeout))
    if args.json:
        print(json.dumps([a.to_json() for a in agents], indent=2))
        return 0
    if not agents:
        print("no agents found")
    for a in agents:
        tokens = "?" if a.tokens is None else a.tokens
        print(f"{a.id}  qsign {a.version}  {a.health}  tokens {tokens}  "
              f"{', '.join(a.addresses)} port {a.port}")
    return 0


def _agent_approve(args: argparse.Namespace) -> int:
    if args.open or args.code is None:
        from agent.protocol.approve import approval_url, read_secret

        config = _effective(args).config
        secret = read_secret(config.state_dir)
        if secret is None:
            raise PairingError("the agent is not running (no approval page); start it with "
                               "'qsign agent run', or give the CODE")
        print(approval_url(config.port, secret))
        return 0
    state = AgentState(_effective(args).config.state_dir)
    try:
        kind, what = decide(state, args.code, approve=True)
    finally:
        state.close()
    print(f"paired: {what}" if kind == "pairing" else f"confirmed: {what}")
    return 0


def _agent_otp_hotp(args: argparse.Namespace) -> int:
    """Provisioned by the person at their machine, not through a page: the page could
    otherwise swap the second factor for one it holds (SECURITY #33)."""
    from agent.identity.otp import OtpStore, TotpVerifier
    from agent.journal import SignatureJournal
    from agent.tokens.model import split_credential

    split_credential(args.credential)
    secret = sys.stdin.readline().strip()
    journal = SignatureJournal(_effective(args).config.state_dir)
    try:
        TotpVerifier(OtpStore(journal.db)).provision_hotp(
            args.credential, secret, counter=args.counter, digits=args.digits)
    finally:
        journal.close()
    print(f"HOTP token set for {args.credential} (next counter {args.counter}); "
          "its codes now replace any authenticator app's")
    return 0


def _agent_origins(args: argparse.Namespace) -> int:
    config = _effective(args).config
    state = AgentState(config.state_dir)
    try:
        if args.revoke:
            if not state.revoke(args.revoke):
                raise PairingError(f"{args.revoke} is not paired")
            forget_origin(state, args.revoke)
            from agent.revocation import void_origin_in

            # At once, not when the agent notices: its SADs and replays die here; the
            # running agent closes its sockets within a second (agent.protocol.origins).
            voided = void_origin_in(config.state_dir, args.revoke)
            print(f"revoked: {args.revoke}" + (f" ({voided} unused signature "
                                                "authorisation(s) voided)" if voided else ""))
            return 0
        for origin in config.allowed_origins:
            print(f"{origin}  (configuration)")
        for paired in state.paired():
            print(f"{paired.origin}  (paired {paired.paired_at:%Y-%m-%d %H:%M})")
        for code, origin in state.pending():
            print(f"{origin}  (waiting: qsign agent approve {code})")
        for waiting in pending_confirmations(state):
            print(f"{waiting.origin} asks to {waiting.description}  "
                  f"(waiting: qsign agent approve {waiting.code})")
    finally:
        state.close()
    return 0


ERRORS: tuple[type[Exception], ...] = (TokenError, ConfigError, PairingError, DiscoveryError,
                                       ActivationError, HotpSecretInvalid)
