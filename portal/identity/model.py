"""The identity service's vocabulary (issue 7 step 3): document kinds, the policy of
accepted documents, sessions' steps and views, challenges, the verified identity, and
the `IdentityProvider` interface a vendor's service implements in place of the
reference one (portal/identity/service.py)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from portal.identity import countries
from portal.identity.evidence import IssuedEvidence
from portal.identity.mrz import DocumentFormat, Mrz
from portal.identity.specimen import Side


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DocumentKind(enum.StrEnum):
    ID_CARD = "id-card"  # TD1
    PASSPORT = "passport"  # TD3

    @property
    def mrz_format(self) -> DocumentFormat:
        return DocumentFormat.TD1 if self is DocumentKind.ID_CARD else DocumentFormat.TD3

    @property
    def sides(self) -> tuple[Side, ...]:
        return (Side.FRONT, Side.BACK) if self is DocumentKind.ID_CARD else (Side.DATA_PAGE,)

    @property
    def semantics(self) -> str:
        """ETSI EN 319 412-1 §5.1.3 identity type reference."""
        return "IDC" if self is DocumentKind.ID_CARD else "PAS"


class IdentityError(Exception):
    """A refusal with a closed wire code (see http.py for the HTTP statuses)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


class Step(enum.StrEnum):
    DOCUMENT = "document"  # sides still to send
    LIVENESS = "liveness"  # document verified; challenges to answer
    VERIFIED = "verified"
    LOCKED = "locked"  # too many failures: start a new session


def _default_accepted() -> dict[str, frozenset[DocumentKind]]:
    both = frozenset(DocumentKind)
    accepted = {code: both for code, state in countries.BY_MRZ_CODE.items()
                if state.alpha2 is not None}
    for code in ("GBR", "USA", "CAN"):  # no national ID card in the TD1 sense
        accepted[code] = frozenset({DocumentKind.PASSPORT})
    return accepted


@dataclass(frozen=True)
class IdentityPolicy:
    """What the reference service accepts. Frozen; `from_mapping` refuses unknown keys."""

    accepted: Mapping[str, frozenset[DocumentKind]] = field(default_factory=_default_accepted)
    accept_specimens: bool = False  # only for tests, demos and testers
    max_image_bytes: int = 8 * 1024 * 1024
    max_frame_bytes: int = 1024 * 1024
    # A move needs a start and two frames; the page sends up to 24 (one per 150 ms).
    frames_per_answer: tuple[int, int] = (4, 24)
    challenges: int = 3
    challenge_seconds: float = 20.0
    min_answer_seconds: float = 1.0  # quicker than a person can act
    liveness_attempts: int = 3
    max_document_failures: int = 5
    session_minutes: int = 30
    # How long an accepted frame stays refused in any other session: well past the
    # session's end, or a recording could answer a new session once the old one expired.
    frames_kept_days: int = 90
    evidence_minutes: int = 10
    # Largest descriptor distance between the selfie and the document's portrait that is
    # one person: from bench/identity.py's false-accept / false-reject table.
    face_distance: float = 0.55

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> IdentityPolicy:
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"identity policy: unknown key(s) {sorted(unknown)}")
        data = dict(values)
        if "accepted" in data:
            raw = data["accepted"]
            if not isinstance(raw, Mapping):
                raise ValueError("identity policy: accepted is {state: [kinds]}")
            accepted: dict[str, frozenset[DocumentKind]] = {}
            for state, kinds in raw.items():
                found = countries.lookup(str(state))
                if found is None:
                    raise ValueError(f"identity policy: unknown state {state!r}")
                try:
                    accepted[found.mrz_code] = frozenset(DocumentKind(k) for k in kinds)
                except ValueError as exc:
                    raise ValueError(f"identity policy: {state}: kinds are "
                                     f"{[k.value for k in DocumentKind]}") from exc
            data["accepted"] = accepted
        if "frames_per_answer" in data:
            data["frames_per_answer"] = tuple(data["frames_per_answer"])
        return cls(**data)

    def accepts(self, state: str, kind: DocumentKind) -> bool:
        return kind in self.accepted.get(state, frozenset())


# Challenges a person performs in front of the camera; the page words them by `action`.
# Each is checked on the face's landmarks (liveness.py); come-closer, the one a flat
# photo can mimic, is at most one of a series of distinct challenges.
CHALLENGE_ACTIONS = ("turn-head-left", "turn-head-right", "blink", "look-up",
                     "come-closer")


@dataclass(frozen=True)
class Challenge:
    id: str
    action: str
    count: int | None  # fingers to show, for show-fingers
    nonce: str  # echoed with the answer: binds frames to this challenge
    issued_at: dt.datetime
    deadline: dt.datetime
    index: int  # 1-based position in the series
    of: int


@dataclass(frozen=True)
class VerifiedIdentity:
    """The identity read from the document itself (never from a form)."""

    document: DocumentKind
    issuing_state: str  # MRZ code
    document_number: str
    surname: tuple[str, ...]  # MRZ words
    given_names: tuple[str, ...]
    birth_date: dt.date
    sex: str
    nationality: str
    expiry_date: dt.date
    specimen: bool

    def as_json(self) -> dict[str, Any]:
        return {"document": self.document.value, "issuingState": self.issuing_state,
                "documentNumber": self.document_number, "surname": list(self.surname),
                "givenNames": list(self.given_names),
                "birthDate": self.birth_date.isoformat(), "sex": self.sex,
                "nationality": self.nationality, "expiryDate": self.expiry_date.isoformat(),
                "specimen": self.specimen}


@dataclass(frozen=True)
class SideResult:
    side: Side
    specimen: bool
    words: tuple[str, ...]  # printed words, upper case, accents kept
    mrz: Mrz | None  # from the back or the data page
    readings: tuple[Mrz, ...] = ()  # every reading the check digits allow (mrz first)
    portrait: tuple[float, ...] | None = None  # the photo side's face descriptor
    # Per MRZ line, what tesseract and the OCR-B shape reading both read ('?' elsewhere).
    agreed: tuple[str, ...] = ()
    swaps: tuple[int, ...] = ()  # per reading, the look-alikes swapped to verify it
    # Number-like words read again alone (ocr._numbers_again): the number's second chance.
    numbers_again: tuple[str, ...] = ()

@dataclass(frozen=True)
class SessionView:
    id: str
    signer: str
    document: DocumentKind
    step: Step
    sides: tuple[Side, ...]  # verified so far
    expires_at: dt.datetime
    identity: VerifiedIdentity | None

    def as_json(self) -> dict[str, Any]:
        return {"session": self.id, "document": self.document.value, "step": self.step.value,
                "sides": [s.value for s in self.sides],
                "required": [s.value for s in self.document.sides],
                "expiresAt": self.expires_at.isoformat(),
                "identity": self.identity.as_json() if self.identity else None}


class IdentityProvider(Protocol):
    """What the portal needs from an identity service (the reference one below, or a
    vendor's). Methods may block (OCR): the web layer calls them in an executor."""

    def open_session(self, signer: str, document: DocumentKind) -> SessionView: ...

    def session(self, session_id: str) -> SessionView: ...

    def submit_side(self, session_id: str, side: Side, image: bytes) -> SessionView: ...

    def next_challenge(self, session_id: str) -> Challenge: ...

    def answer_challenge(self, session_id: str, challenge_id: str, nonce: str,
                         frames: list[bytes]) -> SessionView: ...

    def identity(self, session_id: str) -> VerifiedIdentity: ...

    def evidence(self, session_id: str, spki_der: bytes, *, given_names: str | None = None,
                 surname: str | None = None) -> IssuedEvidence: ...
