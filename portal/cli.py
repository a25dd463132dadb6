"""`qsign portal ...`: run the signature service and look into it."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from ground.http_guard import GuardedSite, GuardLimits, serve
from ground.sql import DatabaseError
from portal.config import ConfigError, PortalConfig
from portal.store import Store, migrate_database

log = logging.getLogger(__name__)
ERRORS: tuple[type[Exception], ...] = (ConfigError, DatabaseError, OSError)


def register(subparsers: Any) -> None:
    portal = subparsers.add_parser("portal", help="the signature service")
    sub = portal.add_subparsers(dest="portal_command", required=True)

    p = sub.add_parser("serve", help="run the signature service")
    p.add_argument("--config", type=Path, help="TOML file with a [portal] table")
    p.add_argument("--port", type=int, help="override portal.port")
    p.set_defaults(func=_serve)

    p = sub.add_parser("token", help="print the requester API's bearer token")
    p.add_argument("--config", type=Path)
    p.set_defaults(func=_token)

    # `qsign portal specimen ...` and other identity-service commands, when present.
    try:
        from portal.identity import cli as identity_cli
    except ImportError:
        pass
    else:
        identity_cli.register(sub)

    p = sub.add_parser("admin", help="make an account a service administrator (master "
                       "console, every workspace), or no longer with --remove")
    p.add_argument("email", help="the account's e-mail address")
    p.add_argument("--remove", action="store_true")
    p.add_argument("--config", type=Path)
    p.set_defaults(func=_admin)

    p = sub.add_parser("migrate", help="bring the database to the latest schema (the "
                       "service does it at start too)")
    p.add_argument("--config", type=Path)
    p.set_defaults(func=_migrate)

    audit = sub.add_parser("audit", help="the audit log (portal/audit.py)")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    p = audit_sub.add_parser("verify", help="check the hash chain; exit 1 naming the "
                             "first changed, deleted or moved entry")
    p.add_argument("--config", type=Path)
    p.add_argument("--expect", metavar="SEQ:HASH", help="a head printed earlier, kept "
                   "outside the database (default: STATE_DIR/audit.head, if any)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_audit_verify)

    p = sub.add_parser("outbox", help="texts and e-mails the portal sent (testers)")
    p.add_argument("--config", type=Path)
    p.add_argument("--to", help="only those to this phone number or address")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_outbox)


def _config(args: argparse.Namespace) -> PortalConfig:
    config = PortalConfig.load(args.config)
    if getattr(args, "port", None):
        if not 1 <= args.port <= 65535:
            raise ConfigError("--port: 1 to 65535")
        config = dataclasses.replace(config, port=args.port)
    return config


def _serve(args: argparse.Namespace) -> int:
    from portal.service import create_app

    config = _config(args)
    app = create_app(config)
    limits = GuardLimits(  # slow clients and connection floods: qsign/http_guard.py
        header_timeout=config.header_timeout, header_max=2 * config.header_timeout,
        body_timeout=config.body_timeout, idle_timeout=config.idle_timeout,
        max_per_address=config.max_connections_per_address,
        max_connections=max(1024, config.max_connections_per_address))

    def ready(site: GuardedSite) -> None:
        print(f"portal: {config.base_url} (requester token: "
              f"{config.state_dir}/requester.token)", flush=True)

    asyncio.run(serve(app, host=config.host, port=config.port, limits=limits,
                      ready=ready))
    return 0


def _token(args: argparse.Namespace) -> int:
    from portal.routes.state import requester_token

    print(requester_token(PortalConfig.load(args.config).state_dir))
    return 0


def _admin(args: argparse.Namespace) -> int:
    from portal import audit
    from portal.accounts import Accounts
    from portal.errors import PortalError

    config = PortalConfig.load(args.config)
    store = Store.open(config.database_url, config.state_dir)
    try:
        user = Accounts(store.db, store.clock).set_service_admin(args.email, not args.remove)
        audit.record(store.db, actor="cli", action="account.service-admin",
                     subject=f"user:{user.id}", details={"serviceAdmin": not args.remove})
    except PortalError as exc:
        print(f"qsign portal admin: {exc}")
        return 1
    finally:
        store.close()
    print(f"{user.email}: {'service administrator' if user.is_service_admin else 'member'}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    config = PortalConfig.load(args.config)
    print(f"portal database: {migrate_database(config.database_url, config.state_dir)}")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from portal import audit

    config = PortalConfig.load(args.config)
    try:  # without --expect, the head the portal anchored beside its database
        expect = audit.Head.parse(args.expect) if args.expect else audit.read_anchor(
            config.state_dir / audit.ANCHOR_FILE)
    except ValueError as exc:
        raise ConfigError(f"--expect or {audit.ANCHOR_FILE}: {exc}") from exc
    store = Store.open(config.database_url, config.state_dir)
    try:
        result = audit.verify(store.db, expect=expect)
    finally:
        store.close()
    print(json.dumps(result.as_json()) if args.json else result)
    return 0 if result.ok else 1


def _outbox(args: argparse.Namespace) -> int:
    config = PortalConfig.load(args.config)
    store = Store.open(config.database_url, config.state_dir)
    try:
        sms = store.sms(args.to)
        mails = store.mails(to=args.to)
    finally:
        store.close()
    if args.json:
        print(json.dumps({
            "sms": [{"to": to, "text": text, "at": at.isoformat()} for to, text, at in sms],
            "mail": [{"to": m.to, "subject": m.subject, "at": m.at.isoformat(),
                      "sent": m.sent_at is not None} for m in mails]}, indent=2))
        return 0
    for to, text, at in sms:
        print(f"{at:%Y-%m-%d %H:%M:%S} SMS  {to}: {text}")
    for m in mails:
        state = "sent" if m.sent_at else f"pending ({m.last_error or 'no SMTP'})"
        print(f"{m.at:%Y-%m-%d %H:%M:%S} MAIL {m.to}: {m.subject} [{state}]")
    return 0
