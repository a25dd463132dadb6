"""`qsign portal specimen ...`: synthetic ID documents for tests and testers, and
`qsign portal identity-key` to create and show the identity service's evidence
certificate (the file the CA trusts with `qsign ca trust-identity`)."""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from pathlib import Path
from typing import Any

from portal.identity import camera, portraits, specimen
from portal.identity.evidence import CERT_FILE, EvidenceSigner
from portal.identity.mrz import DocumentFormat


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a date as YYYY-MM-DD") from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("specimen", help="make a SPECIMEN ID document (PNG images)")
    p.add_argument("--type", dest="fmt", choices=[f.value for f in DocumentFormat],
                   required=True, help="td1: ID card (front and back), td3: passport page")
    p.add_argument("--country", required=True, help="issuing state: FRA, D (or DEU), ITA ...")
    p.add_argument("--surname", required=True)
    p.add_argument("--given", required=True, help="given name(s), space separated")
    p.add_argument("--sex", choices=["F", "M", "X"], default="F")
    p.add_argument("--birth", type=_date, help="birth date, YYYY-MM-DD (default 1990-05-17)")
    p.add_argument("--expiry", type=_date, help="expiry date (default: in five years)")
    p.add_argument("--number", help="document number (default: random)")
    p.add_argument("--defect", choices=[d.value for d in specimen.Defect],
                   help="a deliberate defect, for refusal tests")
    p.add_argument("--portrait", default="astronaut", metavar="FILE|NAME",
                   help="the holder's photo: a PNG/JPEG file, or a public-domain sample "
                   f"({', '.join(sorted(portraits.SAMPLES))}: with qsign[dev]); the "
                   "video check compares the selfie with it (default: astronaut)")
    p.add_argument("--out", type=Path, nargs="+", required=True,
                   help="PNG files: front and back (td1) or the data page (td3)")
    p.add_argument("--photographed", type=int, metavar="SEED",
                   help="write JPEG photographs of the sides instead, as a phone takes "
                   "them (tilted up to 7 degrees, at a slant, unevenly lit, blurred, "
                   "JPEG 60; the same SEED gives the same photographs)")
    p.set_defaults(func=_specimen)

    p = subparsers.add_parser("identity-key", help="create (once) and print the identity "
                              "service's evidence certificate path")
    p.add_argument("--dir", type=Path, required=True, help="the identity service's key "
                   "directory")
    p.set_defaults(func=_identity_key)


def _specimen(args: argparse.Namespace) -> int:
    fmt = DocumentFormat(args.fmt)
    sides = specimen.SIDES[fmt]
    if len(args.out) != len(sides):
        print(f"qsign: error: --out needs {len(sides)} file(s) for {fmt.value}: "
              + ", ".join(s.value for s in sides), file=sys.stderr)
        return 2
    try:
        data = specimen.make_data(fmt, country=args.country, surname=args.surname,
                                  given_names=args.given, sex=args.sex, birth_date=args.birth,
                                  expiry_date=args.expiry, number=args.number)
        made = specimen.render(data, defect=specimen.Defect(args.defect)
                               if args.defect else None,
                               portrait=portraits.load(args.portrait))
    except (specimen.SpecimenError, portraits.PortraitUnavailable) as exc:
        print(f"qsign: error: {exc}", file=sys.stderr)
        return 2
    rng = random.Random(args.photographed)
    for side, path in zip(sides, args.out, strict=True):
        image = made.images[side]
        if args.photographed is not None:
            image = camera.photograph(image, camera.random_shot(rng), rng)
        path.write_bytes(image)
        print(f"{side.value}: {path}")
    print("MRZ:")
    for line in made.mrz_lines:
        print(f"  {line}")
    return 0


def _identity_key(args: argparse.Namespace) -> int:
    signer = EvidenceSigner.open(args.dir)
    print(f"{args.dir / CERT_FILE}  (x5t#S256 {signer.thumbprint})")
    print(f"trust it with: qsign ca trust-identity {args.dir / CERT_FILE} --dir CA_DIR")
    return 0
