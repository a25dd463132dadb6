"""Measure the reference identity service's document reading on generated specimens:
`python -m tests.support.identity_ocr_rate [N] [--jpeg QUALITY] [--seed S]`.

Prints, per format, how many documents went through (every check digit verified, the
printed side agreeing, the identity equal to what was drawn) and the OCR time per
document. Prints numbers; asserts nothing (DESIGN: benchmarks are never timed tests).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time

from PIL import Image

from portal.identity.model import DocumentKind, IdentityError
from portal.identity.mrz import DocumentFormat
from portal.identity.specimen import Side
from tests.support.identity_fixtures import make_service, make_specimen, selfie

SURNAMES = ["Martin", "Dupont-Lefèvre", "Müller", "van der Berg", "D'Angelo", "Kowalczyk",
            "García Pérez", "Østergård", "Nguyen", "O'Neill", "Kirk", "Papadopoulos",
            "Schäfer", "Łukasiewicz", "Björk", "Fernández de Córdoba"]
GIVEN = ["Léa", "Hélène Marie", "Jürgen Karl", "Kees", "Maria Grazia", "Kazimierz", "José",
         "Søren", "Anh", "Siobhán", "Kirk", "Ioannis", "Zoë", "Jan Kacper", "Ásta", "Inés"]
COUNTRIES = ["FRA", "D", "NLD", "ITA", "POL", "ESP", "DNK", "BEL", "IRL", "SWE", "AUT",
             "GRC", "PRT", "FIN", "CZE", "LUX"]


def _jpeg(png: bytes, quality: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=20, help="documents per format")
    parser.add_argument("--jpeg", type=int, help="send as JPEG of this quality")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for fmt, kind in ((DocumentFormat.TD1, DocumentKind.ID_CARD),
                      (DocumentFormat.TD3, DocumentKind.PASSPORT)):
        service, clock = make_service()
        ok, times, failures = 0, [], []
        for _ in range(args.n):
            surname, given = rng.choice(SURNAMES), rng.choice(GIVEN)
            doc = make_specimen(fmt, rng.choice(COUNTRIES), surname, given,
                                seed=rng.randrange(1 << 30), sex=rng.choice("FMX"))
            sid = service.open_session("bench", kind).id
            started = time.monotonic()  # OCR and checks of the document
            try:
                for side in kind.sides:
                    image = doc.images[side]
                    service.submit_side(sid, Side(side),
                                        _jpeg(image, args.jpeg) if args.jpeg else image)
                times.append(time.monotonic() - started)
                for _ in range(service.policy.challenges):
                    challenge = service.next_challenge(sid)
                    clock.advance(2)
                    service.answer_challenge(sid, challenge.id, challenge.nonce,
                                             selfie(challenge.action))
                identity = service.identity(sid)
                drawn = doc.data
                if (identity.document_number, identity.birth_date) != (
                        drawn.document_number, drawn.birth_date) or "<".join(
                        (*identity.surname, "", *identity.given_names)) not in "".join(
                        doc.mrz_lines):
                    failures.append(f"wrong identity {identity} for {doc.mrz_lines}")
                else:
                    ok += 1
            except IdentityError as exc:
                failures.append(f"{exc.code} {exc} ({surname} / {given} {doc.mrz_lines})")
        timing = (f"median {statistics.median(times):.2f} s, max {max(times):.2f} s"
                  if times else "no document went through")
        print(f"{fmt.value}: {ok}/{args.n} read and verified; per document {timing}")
        for failure in failures:
            print(f"  {failure}")


if __name__ == "__main__":
    main()
