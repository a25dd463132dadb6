"""`qsign validate FILE.pdf...`: each file's signatures validated (ETSI EN 319 102-1) and
qualified (TS 119 172-4) under the trusted lists given; one result per file. Exit status
0 only when every signature of every file is TOTAL-PASSED."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ground.files import write_atomically
from validation.engine import validate_pdf
from validation.errors import TrustedListConfigError, ValidationError
from validation.report import FileReport
from validation.trusted_lists import ValidationSettings

NOT_ALL_PASSED = 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("validate", help="validate the signatures of PDF files and "
                              "their qualified status (ETSI EN 319 102-1, TS 119 615)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.pdf")
    p.add_argument("--tl", action="append", default=[], metavar="FILE|URL",
                   help="a trusted list or a list of trusted lists (repeatable)")
    p.add_argument("--tl-cert", action="append", default=[], type=Path, metavar="PEM",
                   help="a scheme operator's certificate that signs a --tl (repeatable; "
                   "a list of trusted lists without one is checked with the EU LOTL signers "
                   "pyHanko knows)")
    p.add_argument("--online", action="store_true", help="fetch revocation data and "
                   "certificates the files do not carry (off: the files' DSS only)")
    p.add_argument("--no-expired-lists", action="store_true",
                   help="do not use a trusted list past its NextUpdate (default: used, "
                   "and flagged in the report)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="one JSON object per file, one per line (see README)")
    out.add_argument("--xml", action="store_true",
                     help="the ETSI TS 119 102-2 validation report (one file)")
    out.add_argument("--pdf", type=Path, metavar="OUT",
                     help="also write the report as a PDF a person can keep (one file)")
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    if not args.verbose:
        # pyHanko logs each validation step that fails with a traceback; the report says it.
        logging.getLogger("pyhanko").setLevel(logging.ERROR)
    if (args.xml or args.pdf) and len(args.files) != 1:
        raise TrustedListConfigError("--xml and --pdf write one report: give one file")
    if not args.tl:
        print("qsign validate: no trusted list (--tl): no signature can be trusted",
              file=sys.stderr)
    settings = ValidationSettings.load(args.tl, operator_certs=args.tl_cert,
                                       online=args.online,
                                       use_expired_lists=not args.no_expired_lists)
    for status in settings.as_of(dt.datetime.now(dt.UTC)).trusted_lists:
        if status.problem:
            used = "used" if status.ok else "not used"
            print(f"qsign validate: trusted list {status.source} {used}: {status.problem}",
                  file=sys.stderr)
    all_passed = True
    for path in args.files:
        try:
            report = validate_pdf(path.read_bytes(), settings, name=path.name)
        except (ValidationError, OSError) as exc:
            all_passed = False
            _print_error(args, path, exc)
            continue
        all_passed = all_passed and report.passed
        if args.xml:
            sys.stdout.buffer.write(report.to_xml())
        elif args.json:
            print(json.dumps(report.to_json(), ensure_ascii=False))
        else:
            print(_text(report))
        if args.pdf:
            from validation.pdf_report import to_pdf

            write_atomically(args.pdf, to_pdf(report), 0o644)
    return 0 if all_passed else NOT_ALL_PASSED


def _print_error(args: argparse.Namespace, path: Path, exc: Exception) -> None:
    code = exc.code if isinstance(exc, ValidationError) else "UNREADABLE"
    if args.json:
        print(json.dumps({"file": path.name, "error": {"code": code, "message": str(exc)}},
                         ensure_ascii=False))
    else:
        print(f"{path}: {code}: {exc}", file=sys.stdout if not args.xml else sys.stderr)


def _text(report: FileReport) -> str:
    if not report.signatures:
        return f"{report.name}: no signature"
    lines = [f"{report.name}: {len(report.signatures)} signature(s)"]
    for s in report.signatures:
        when = (f"{s.signing_time.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}Z ({s.time_source})"
                if s.signing_time
                else "time unknown")
        verdict = s.indication + (f"/{s.sub_indication}" if s.sub_indication else "")
        lines.append(f"  {s.field}: {verdict}, {s.qualification}, {s.signer or '?'}, {when}, "
                     f"{s.level}, {s.coverage}")
        if s.qualification_reason:
            lines.append(f"    {s.qualification_reason}")
        lines.append(f"    {s.coverage_detail}")
    return "\n".join(lines)


ERRORS: tuple[type[Exception], ...] = (TrustedListConfigError,)
