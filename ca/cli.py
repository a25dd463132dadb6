"""`qsign ca ...`: create, run and administer the certification authority."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ca.authority import Authority, CaConfig, ConfigError
from ca.keys import CaKeyError
from ca.registry import REVOCATION_REASONS, Registry, RegistryError
from ground.files import write_atomically

log = logging.getLogger(__name__)
DEFAULT_PORT = 8790


def register(subparsers: Any) -> None:
    ca = subparsers.add_parser("ca", help="the certification authority")
    sub = ca.add_subparsers(dest="ca_command", required=True)

    p = sub.add_parser("init", help="create a root, an issuing CA, OCSP and TSA certificates")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--name", default=CaConfig.name)
    p.add_argument("--base-url", default=f"http://127.0.0.1:{DEFAULT_PORT}",
                   help="where relying parties reach the CRL, OCSP and documents")
    p.add_argument("--pkcs11-module", help="keep the keys in this PKCS#11 token")
    p.add_argument("--token-label")
    p.add_argument("--pin", help="the token's user PIN (asked when omitted)")
    p.set_defaults(func=_init)

    p = sub.add_parser("serve", help="run the CA service")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--db", help="postgresql://... (default: SQLite in the CA directory)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("list", help="issued certificates and their status")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--db")
    p.set_defaults(func=_list)

    p = sub.add_parser("revoke", help="revoke a certificate")
    p.add_argument("serial", help="hexadecimal serial")
    p.add_argument("--reason", required=True, choices=REVOCATION_REASONS)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--db")
    p.set_defaults(func=_revoke)

    p = sub.add_parser("migrate", help="bring the registry's database to the latest "
                       "schema (the service does it at start too)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--db")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("trusted-list", help="write the CA's demo trusted list (ETSI TS 119 "
                       "612), signed by its demo scheme operator")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--withdrawn-at", type=_instant, help="ISO 8601: the CA/QC service "
                   "withdrawn since then (granted before), for validators' tests")
    p.add_argument("--granted-since", type=_instant,
                   help="ISO 8601 (default: the issuing certificate's notBefore)")
    p.add_argument("--qualifier", action="append", default=[], metavar="NAME",
                   help="a TS 119 612 qualifier for the CA/QC service's QCP-n-qscd "
                   "certificates, e.g. QCNoQSCD (repeatable)")
    p.add_argument("--location", help="where the list is published (default BASE/tl.xml)")
    p.add_argument("--lotl-out", type=Path,
                   help="also write a list of trusted lists pointing at --location")
    p.set_defaults(func=_trusted_list)

    for name, text in (("trust-manufacturer", "trust a token maker's attestation root"),
                       ("trust-identity", "trust an identity service's evidence certificate")):
        p = sub.add_parser(name, help=text)
        p.add_argument("certificate", type=Path, help="PEM or DER certificate file")
        p.add_argument("--dir", type=Path, required=True)
        p.set_defaults(func=_trust, kind=name)


def _init(args: argparse.Namespace) -> int:
    config = CaConfig(name=args.name, base_url=args.base_url)
    pin = None
    if args.pkcs11_module:
        if not args.token_label:
            raise ConfigError("--pkcs11-module needs --token-label")
        pin = args.pin or getpass.getpass("token PIN: ")
        config = CaConfig(name=args.name, base_url=args.base_url, key_store="pkcs11",
                          pkcs11_module=args.pkcs11_module, token_label=args.token_label)
    authority = Authority.init(args.dir, config, pin=pin)
    print(f"CA created in {args.dir}")
    for role, cert in authority.certificates.items():
        print(f"{role:8} {cert.subject.human_friendly}  serial {cert.serial_number:x}")
    print(f"keys: {'PKCS#11 token ' + config.token_label if pin else 'files (0600)'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from ca.service import create_app

    authority = Authority.load(args.dir)
    registry = Registry.open(args.db, args.dir)
    host = urlsplit(f"//{args.host}").hostname or args.host
    web.run_app(create_app(authority, registry), host=host, port=args.port,
                print=lambda text: print(text, flush=True))
    return 0


def _list(args: argparse.Namespace) -> int:
    Authority.load(args.dir)  # a clear error if DIR is no CA
    registry = Registry.open(args.db, args.dir)
    try:
        records = registry.all()
    finally:
        registry.close()
    if not records:
        print("no certificates issued")
    for r in records:
        status = r.status.value + (f" {r.revoked_at:%Y-%m-%d} {r.reason}" if r.revoked_at else "")
        print(f"{r.serial:x}  {r.issued_at:%Y-%m-%d}  until {r.not_after:%Y-%m-%d}  "
              f"{status}  {r.subject}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    Authority.load(args.dir)
    try:
        serial = int(args.serial, 16)
    except ValueError:
        raise RegistryError(f"{args.serial!r} is not a hexadecimal serial") from None
    registry = Registry.open(args.db, args.dir)
    try:
        record = registry.revoke(serial, args.reason)
    finally:
        registry.close()
    print(f"{record.serial:x} revoked at {record.revoked_at:%Y-%m-%d %H:%M:%S}Z "
          f"({record.reason})")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    Authority.load(args.dir)
    print(f"registry: {Registry.migrate(args.db, args.dir)}")
    return 0


def _instant(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _trusted_list(args: argparse.Namespace) -> int:
    from ca.trusted_list import SchemeOperator, list_of_lists, trusted_list

    authority = Authority.load(args.dir)
    location = args.location or args.out.resolve().as_uri()
    try:
        data = trusted_list(authority, location=location, granted_since=args.granted_since,
                            withdrawn_at=args.withdrawn_at, qualifiers=args.qualifier)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    write_atomically(args.out, data, 0o644)
    operator = SchemeOperator.of(authority)
    print(f"trusted list: {args.out}")
    if args.lotl_out:
        lotl = list_of_lists(authority, [(location, authority.config.country, operator.pem)])
        write_atomically(args.lotl_out, lotl, 0o644)
        print(f"list of trusted lists: {args.lotl_out}")
    print(f"scheme operator certificate: {args.dir / 'trusted-list' / 'operator.pem'}")
    return 0


def _trust(args: argparse.Namespace) -> int:
    authority = Authority.load(args.dir)
    data = args.certificate.read_bytes()
    if args.kind == "trust-manufacturer":
        path = authority.trust_manufacturer(data)
    else:
        path = authority.trust_identity_service(data)
    print(f"trusted: {path}")
    return 0


ERRORS: tuple[type[Exception], ...] = (ConfigError, CaKeyError, RegistryError,
                                       FileExistsError)
