"""Child process of tests/integration/test_portal_intake_corpus.py: each PDF given, and
`--damaged N` copies of it with bytes flipped or cut short (a fixed seed), through the
portal's document intake (portal/intake.inspect: PDFium's page count, then the active
content scan); one JSON line per input: accepted, the PortalError's code, or the
exception that escaped."""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path

from portal import intake
from portal.errors import PortalError


def damaged(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    if rng.random() < 0.3:
        out = out[:int(len(out) * rng.uniform(0.5, 1))]
    return bytes(out)


def inputs(files: list[Path], copies: int, seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for path in files:
        data = path.read_bytes()
        yield path.name, data
        for number in range(copies if data else 0):
            yield f"{path.name}#{number}", damaged(data, rng)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--damaged", type=int, default=0)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    for name, data in inputs(args.files, args.damaged, args.seed):
        try:
            inspected = intake.inspect(data, 0, intake.ContentPolicy.WARN)
            answer = {"input": name, "accepted": inspected.pages}
        except PortalError as exc:
            answer = {"input": name, "code": exc.code.value}
        except Exception as exc:  # what the test looks for: it would be a 500
            answer = {"input": name, "escaped": f"{type(exc).__name__}: {exc}"[:200]}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
