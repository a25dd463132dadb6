"""The `qsign` command: thin argument parsing over the packages' own CLIs."""

from __future__ import annotations

import argparse
import logging
import sys

from ground import __version__
from ground.traffic import level_from_env


def build_parser() -> tuple[argparse.ArgumentParser, tuple[type[Exception], ...]]:
    from agent import cli as agent_cli
    from ca import cli as ca_cli
    from firmware_sim import cli as card_cli
    from portal import cli as portal_cli
    from qsign import demo
    from validation import cli as validation_cli

    parser = argparse.ArgumentParser(prog="qsign", description=__doc__)
    parser.add_argument("--version", action="version", version=f"qsign {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    card_cli.register(sub)
    agent_cli.register(sub)
    ca_cli.register(sub)
    portal_cli.register(sub)
    demo.register(sub)
    validation_cli.register(sub)
    return parser, (card_cli.ERRORS + agent_cli.ERRORS + ca_cli.ERRORS + portal_cli.ERRORS
                    + validation_cli.ERRORS + (demo.DemoError,))


def main(argv: list[str] | None = None) -> int:
    parser, errors = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    try:
        level = level_from_env(level)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except errors as exc:
        print(f"qsign: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
