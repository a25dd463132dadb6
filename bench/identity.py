"""The reference identity service measured (issue 17):

    python bench/identity.py [SECTION ...] [--quick N] [--seed S]

Sections: `mrz` (documents photographed as a phone would, read by the service), `faces`
(the face-match false-accept / false-reject table, the liveness moves seen, ms per frame:
bench/identity_faces.py).
`--quick N` measures N documents instead of the full set (at least 1,000 for the MRZ).
Prints numbers; asserts nothing (DESIGN: benchmarks are never timed tests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.identity_faces import faces_section
from portal.identity import mrz, ocr, sample_documents, specimen
from portal.identity.evidence import EvidenceSigner
from portal.identity.model import (
    DocumentKind,
    IdentityError,
    IdentityPolicy,
    VerifiedIdentity,
)
from portal.identity.mrz import DocumentFormat, MrzInvalid
from portal.identity.service import ReferenceIdentityService

MRZ_DOCUMENTS = 1000
WORKERS = 2  # the machine's two cores; tesseract runs single-threaded in each
@dataclass(frozen=True)
class Outcome:
    format: str
    mrz: str  # "read" (the drawn MRZ among the readings), "wrong" or MrzReason
    document: str  # "accepted", "wrong" (accepted, not the drawn identity) or a code
    seconds: float  # the service's whole document step
    note: str


@lru_cache(maxsize=1)
def _signer() -> EvidenceSigner:
    return EvidenceSigner.generate()


def _mrz_one(job: tuple[int, int]) -> Outcome:
    index, seed = job
    doc, photos = sample_documents.photographed(index, seed)
    fmt = doc.data.format
    kind = DocumentKind.ID_CARD if fmt is DocumentFormat.TD1 else DocumentKind.PASSPORT
    mrz_side = specimen.Side.BACK if fmt is DocumentFormat.TD1 else specimen.Side.DATA_PAGE
    try:
        readings = ocr.read_mrz(photos[mrz_side], fmt).readings
        found = "read" if doc.mrz_lines in [r.lines for r in readings] else "wrong"
    except MrzInvalid as exc:
        found = exc.reason.value
    service = ReferenceIdentityService(_signer(), IdentityPolicy(accept_specimens=True))
    session = service.open_session("bench", kind).id
    started = time.monotonic()
    note = ""
    try:
        for side in kind.sides:
            service.submit_side(session, side, photos[side])
        identity = service.document_identity(session)
        drawn = doc.data.mrz_lines()
        accepted = mrz_lines_of(identity, fmt) == drawn
        verdict = "accepted" if accepted else "wrong"
        if not accepted:
            note = f"{identity.document_number} for {doc.data.document_number}"
    except IdentityError as exc:
        verdict = exc.code
        note = str(exc)
    return Outcome(fmt.value, found, verdict, time.monotonic() - started,
                   f"seed {seed}: {note}" if note else "")


def mrz_lines_of(identity: VerifiedIdentity, fmt: DocumentFormat) -> tuple[str, ...]:
    """The MRZ the identity's fields compose: equal to the drawn specimen's MRZ if and
    only if the service established the drawn identity."""
    common = {"issuing_state": identity.issuing_state,
              "document_number": identity.document_number,
              "birth_date": identity.birth_date, "sex": identity.sex,
              "expiry_date": identity.expiry_date, "nationality": identity.nationality,
              "surname": " ".join(identity.surname),
              "given_names": " ".join(identity.given_names)}
    if fmt is DocumentFormat.TD1:
        return mrz.compose_td1(**common)  # type: ignore[arg-type]
    return mrz.compose_td3(**common)  # type: ignore[arg-type]


def _rate(count: int, total: int) -> str:
    return f"{count}/{total} = {100.0 * count / max(total, 1):.2f} %"


def mrz_section(args: argparse.Namespace) -> None:
    """MRZ read and wrong-read rates over generated specimens photographed as a phone
    would (portal/identity/camera.py: ±7° rotation, perspective, uneven light, blur,
    noise, JPEG 60), TD1 and TD3 alternately, through the reference service's whole
    document step (MRZ, check digits, printed zone cross-check)."""
    total = args.quick or MRZ_DOCUMENTS
    jobs = sample_documents.seeds(total, args.seed)
    started = time.monotonic()
    with ProcessPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(_mrz_one, jobs, chunksize=4))
    wall = time.monotonic() - started
    print(f"identity mrz: {total} specimens photographed (TD1 and TD3), {WORKERS} workers, "
          f"{wall:.0f} s")
    if total < MRZ_DOCUMENTS:
        print(f"  (a quick run: `python bench/identity.py mrz` measures {MRZ_DOCUMENTS})")
    for fmt in ("td1", "td3", None):
        mine = [o for o in outcomes if fmt is None or o.format == fmt]
        label = fmt or "all"
        mrz_read = sum(o.mrz == "read" for o in mine)
        mrz_wrong = sum(o.mrz == "wrong" for o in mine)
        accepted = sum(o.document == "accepted" for o in mine)
        wrong = sum(o.document == "wrong" for o in mine)
        print(f"  {label}: read rate {_rate(accepted, len(mine))} (documents accepted with "
              f"the drawn identity), wrong-read rate {_rate(wrong, len(mine))} (accepted "
              f"with another); MRZ alone: read {_rate(mrz_read, len(mine))}, verified but "
              f"not the drawn one {_rate(mrz_wrong, len(mine))} (a name: the printed zone "
              "refuses those)")
    seconds = [o.seconds for o in outcomes]
    print(f"  document step per specimen: median {statistics.median(seconds):.2f} s, "
          f"max {max(seconds):.2f} s")
    refused = Counter(o.document for o in outcomes if o.document not in ("accepted",))
    print("  refusals: " + (", ".join(f"{code} {n}" for code, n in refused.most_common())
                            or "none"))
    for outcome in outcomes:
        if outcome.document != "accepted" and outcome.note:
            print(f"    {outcome.format} {outcome.mrz} {outcome.document} {outcome.note}")


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"mrz": mrz_section,
                                                             "faces": faces_section}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []],
                        help="what to measure (default: every section)")
    parser.add_argument("--quick", type=int, metavar="N",
                        help="measure N documents instead of the full set")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    for name in args.sections or list(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
