"""`qsign card ...`: make, run and inspect simulated cards."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from firmware_sim.attestation import Manufacturer
from firmware_sim.card import SimulatedCard, manufacture
from firmware_sim.control import ControlServer, send_command
from firmware_sim.profiles import PROFILES
from firmware_sim.state import CardStore, StateError
from firmware_sim.vpcd import DEFAULT_HOST, DEFAULT_PORT, VpcdLink
from ground.piv import SLOT_OBJECTS, Algorithm, PinPolicy

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    card = subparsers.add_parser("card", help="simulated PIV cards")
    sub = card.add_subparsers(dest="card_command", required=True)

    p = sub.add_parser("init", help="make a factory-fresh card")
    p.add_argument("--state", type=Path, required=True, help="card state file to create")
    p.add_argument("--profile", default="default", choices=sorted(PROFILES))
    p.add_argument("--serial", type=int, help="chip serial (default: random)")
    p.add_argument("--manufacturer", type=Path, help="simulator manufacturer directory")
    p.set_defaults(func=_init)

    p = sub.add_parser("run", help="put the card in the vpcd reader until stopped")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--control", type=Path, help="Unix socket for remove/insert/latency")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each APDU")
    p.set_defaults(func=_run)

    p = sub.add_parser("status", help="serial, retries, slots")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    p = sub.add_parser("ctl", help="send a command to a running card's control socket")
    p.add_argument("--control", type=Path, required=True)
    p.add_argument("command", choices=["remove", "insert", "latency", "status"])
    p.add_argument("argument", nargs="?", default="")
    p.set_defaults(func=_ctl)

    p = sub.add_parser("manufacturer-root", help="print the simulator's manufacturer root (PEM)")
    p.add_argument("--manufacturer", type=Path)
    p.set_defaults(func=_manufacturer_root)


def _init(args: argparse.Namespace) -> int:
    maker = Manufacturer.open(args.manufacturer)
    store = manufacture(args.state, profile=args.profile, manufacturer=maker,
                        serial=args.serial)
    profile = PROFILES[args.profile]
    print(f"serial: {store.state.serial}")
    print(f"profile: {profile.name}")
    print(f"PIN: {profile.default_pin} (default)")
    print(f"PUK: {profile.default_puk} (default)")
    print("management key: default (3DES 010203040506070801020304050607080102030405060708)")
    print(f"state: {args.state}")
    return 0


def _run(args: argparse.Namespace) -> int:
    card = SimulatedCard.open(args.state)
    link = VpcdLink(card, args.host, args.port)
    link.latency = args.latency_ms / 1000
    control = ControlServer(link, args.control) if args.control else None
    if control:
        control.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        link.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"card {card.serial} -> vpcd {args.host}:{args.port}", flush=True)
    worker = threading.Thread(target=link.serve_forever, name="vpcd", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
    if control:
        control.close()
    return 0


def describe(store: CardStore) -> dict[str, Any]:
    state = store.state
    slots = []
    for slot, tag in SLOT_OBJECTS.items():
        record = state.keys.get(slot)
        has_cert = tag in state.objects
        if record is None and not has_cert:
            continue
        slots.append({
            "slot": f"{slot:02X}",
            "key_type": Algorithm(record.algorithm).name if record else None,
            "pin_policy": PinPolicy(record.pin_policy).name if record else None,
            "has_certificate": has_cert,
        })
    return {
        "serial": state.serial,
        "profile": state.profile,
        "firmware_version": ".".join(map(str, state.firmware_version)),
        "pin_retries": state.pin.retries_left,
        "pin_max_retries": state.pin.max_retries,
        "pin_is_default": state.pin.is_default,
        "puk_retries": state.puk.retries_left,
        "puk_max_retries": state.puk.max_retries,
        "management_key_is_default": state.management_key.is_default,
        "slots": slots,
    }


def _status(args: argparse.Namespace) -> int:
    info = describe(CardStore.load(args.state))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"serial: {info['serial']}  profile: {info['profile']}  "
          f"firmware: {info['firmware_version']}")
    print(f"PIN retries: {info['pin_retries']}/{info['pin_max_retries']}"
          f"{' (default PIN)' if info['pin_is_default'] else ''}")
    print(f"PUK retries: {info['puk_retries']}/{info['puk_max_retries']}")
    print(f"management key: {'default' if info['management_key_is_default'] else 'changed'}")
    if not info["slots"]:
        print("slots: none in use")
    for slot in info["slots"]:
        print(f"slot {slot['slot']}: {slot['key_type'] or 'no key'}"
              f"{' pin=' + slot['pin_policy'] if slot['pin_policy'] else ''}"
              f", certificate {'present' if slot['has_certificate'] else 'absent'}")
    return 0


def _ctl(args: argparse.Namespace) -> int:
    reply = send_command(args.control, f"{args.command} {args.argument}".strip())
    print(json.dumps(reply))
    return 1 if "error" in reply else 0


def _manufacturer_root(args: argparse.Namespace) -> int:
    maker = Manufacturer.open(args.manufacturer)
    from cryptography.hazmat.primitives.serialization import Encoding

    sys.stdout.write(maker.root_certificate.public_bytes(Encoding.PEM).decode())
    return 0


ERRORS: tuple[type[Exception], ...] = (StateError, FileExistsError, ValueError, OSError)
