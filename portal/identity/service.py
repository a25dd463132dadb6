"""Identity verification for a first-time signer (issue 7 step 3), behind a provider
interface so that a vendor's service can replace the reference one.

The reference flow, per signer session:

1. The document, each side on its own: a TD1 card's front (printed data, photo) and
   back (MRZ), or a TD3 passport's data page. The MRZ is read by OCR and accepted only
   when every ICAO 9303 check digit verifies; the document type must be accepted for
   its issuing state; it must not have expired; the printed data must agree with the
   MRZ (document number, surname, birth date) and a SPECIMEN mark must be on both
   sides or on neither. Specimens are refused unless the policy is for testing.
2. Liveness: random challenges issued by the server one at a time, each answered with
   captured frames before its deadline.

What the reference service checks about liveness frames: that they are PNG/JPEG images
of one camera, different from each other and from every frame the service accepted in
any session, answering the open challenge (its id and nonce) in its time window; that
every frame shows one face, the document portrait's person (dlib descriptors), and that
the landmarks move as the challenge asks from where the face was when it showed
(face_step.py, liveness.py). What it does not establish (presentation attack detection
proper: a replayed video, a mask, a deepfake) is in README.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from portal.identity import countries, face_step, names, ocr, printed
from portal.identity.evidence import (
    EvidenceRefused,
    EvidenceSigner,
    IssuedEvidence,
    Subject,
    spki_sha256,
)
from portal.identity.frames import FrameStore, MemoryFrames
from portal.identity.model import (
    CHALLENGE_ACTIONS,
    Challenge,
    DocumentKind,
    IdentityError,
    IdentityPolicy,
    SessionView,
    SideResult,
    Step,
    VerifiedIdentity,
    utc_now,
)
from portal.identity.mrz import Mrz, MrzInvalid, MrzReason
from portal.identity.sessions import MemorySessions, SessionCache, SessionStore
from portal.identity.specimen import MARK, Side

Clock = Callable[[], dt.datetime]


_LOCKED = 10**9  # failures at or above: the session is locked


@dataclass
class _Session:
    id: str
    signer: str
    document: DocumentKind
    created: dt.datetime
    expires: dt.datetime
    sides: dict[Side, SideResult] = field(default_factory=dict)
    identity: VerifiedIdentity | None = None
    failures: int = 0
    liveness_attempts: int = 0
    challenges: list[Challenge] = field(default_factory=list)
    open_challenge: Challenge | None = None
    passed: int = 0
    verified: bool = False
    frame_digests: set[bytes] = field(default_factory=set)
    evidence: IssuedEvidence | None = None

    @property
    def step(self) -> Step:
        if self.failures >= _LOCKED:
            return Step.LOCKED
        if self.verified:
            return Step.VERIFIED
        if self.identity is not None:
            return Step.LIVENESS
        return Step.DOCUMENT


class ReferenceIdentityService:
    """The reference IdentityProvider: tesseract OCR, ICAO 9303 checks, timed challenges.

    Sessions are kept in a `SessionStore` (the portal's database: a restart loses no
    signer's progress; in memory by default); images are not kept after their side is
    verified, only what was read from them.
    """

    def __init__(self, signer: EvidenceSigner, policy: IdentityPolicy | None = None, *,
                 clock: Clock = utc_now, sessions: SessionStore | None = None,
                 frames: FrameStore | None = None) -> None:
        self.signer = signer
        self.policy = policy or IdentityPolicy()
        self.clock = clock
        # Each call reads its session from `sessions` and writes it back with a
        # compare-and-set (the portal's database, shared by its processes).
        self._sessions = SessionCache(sessions or MemorySessions(), _Session)
        self._lock = self._sessions
        # Every session's frames, in the same database as the sessions: shared by the
        # portal's processes and kept across a restart.
        self._frames = frames or MemoryFrames()

    # sessions ----------------------------------------------------------------------

    def open_session(self, signer: str, document: DocumentKind) -> SessionView:
        if not isinstance(signer, str) or not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", signer):
            raise IdentityError("BAD_REQUEST", "signer: 1-128 characters [A-Za-z0-9._:-]")
        document = self._kind(document)
        now = self.clock()
        session = _Session(secrets.token_urlsafe(32), signer, document, now,
                           now + dt.timedelta(minutes=self.policy.session_minutes))
        with self._lock:
            self._expire(now)
            self._sessions.put(session)
            return self._view(session)

    def session(self, session_id: str) -> SessionView:
        with self._lock:
            return self._view(self._get(session_id))

    def _kind(self, document: object) -> DocumentKind:
        try:
            return DocumentKind(str(document))
        except ValueError:
            raise IdentityError("BAD_REQUEST", "document: 'id-card' or 'passport'") from None

    def _expire(self, now: dt.datetime) -> None:
        self._sessions.expire(now)
        self._frames.expire_identity_frames(now)

    def _get(self, session_id: str) -> _Session:
        if not isinstance(session_id, str):
            raise IdentityError("IDENTITY_SESSION_UNKNOWN", "no such identity session")
        session = self._sessions.get(session_id)
        if session is None:
            raise IdentityError("IDENTITY_SESSION_UNKNOWN", "no such identity session")
        if session.expires <= self.clock():
            self._sessions.drop(session_id)
            raise IdentityError("IDENTITY_SESSION_EXPIRED", "the identity session has expired")
        if session.failures >= _LOCKED:
            raise IdentityError("IDENTITY_LOCKED", "too many failed attempts: start again")
        return session

    def _view(self, session: _Session) -> SessionView:
        return SessionView(session.id, session.signer, session.document, session.step,
                           tuple(s for s in session.document.sides if s in session.sides),
                           session.expires, session.identity if session.verified else None)

    def _fail(self, session: _Session, error: IdentityError) -> IdentityError:
        self._sessions.touch(session)
        session.failures += 1
        if session.failures >= self.policy.max_document_failures:
            session.failures = _LOCKED
            error.extra["locked"] = True
        return error

    # the document ------------------------------------------------------------------

    def submit_side(self, session_id: str, side: Side, image: bytes) -> SessionView:
        with self._lock:
            session = self._get(session_id)
            if session.step is not Step.DOCUMENT:
                raise IdentityError("WRONG_STEP", "the document is already verified")
            try:
                side = Side(side)
            except ValueError:
                raise IdentityError("BAD_REQUEST", "side: front, back or data-page") from None
            if side not in session.document.sides:
                raise IdentityError("BAD_REQUEST", f"a {session.document.value} has sides "
                                    + ", ".join(s.value for s in session.document.sides))
        if not isinstance(image, bytes) or len(image) > self.policy.max_image_bytes:
            raise IdentityError("PAYLOAD_TOO_LARGE", "the image is larger than "
                                f"{self.policy.max_image_bytes} bytes")
        # OCR outside the lock: it takes a second and other sessions go on meanwhile.
        try:
            result = face_step.with_portrait(
                self._read_side(session.document, side, image), image)
        except IdentityError as exc:
            with self._lock:  # counted on the session as stored now, not this call's copy
                raise self._fail(self._get(session_id), exc) from None
        with self._lock:
            session = self._get(session_id)
            if session.step is not Step.DOCUMENT:
                raise IdentityError("WRONG_STEP", "the document is already verified")
            session.sides[side] = result
            if all(s in session.sides for s in session.document.sides):
                try:
                    session.identity = self._cross_check(session)
                except IdentityError as exc:
                    # The sides disagree: neither is trusted; both are captured again.
                    session.sides.clear()
                    raise self._fail(session, exc) from None
            return self._view(session)

    def _read_side(self, kind: DocumentKind, side: Side, image: bytes) -> SideResult:
        try:
            picture = ocr.load_image(image)
        except ocr.ImageInvalid as exc:
            raise IdentityError("IMAGE_INVALID", str(exc)) from exc
        reading: Mrz | None = None
        readings: tuple[Mrz, ...] = ()
        agreed: tuple[str, ...] = ()
        swaps: tuple[int, ...] = ()
        if side in (Side.BACK, Side.DATA_PAGE):
            try:
                found = ocr.read_mrz(picture, kind.mrz_format)
            except MrzInvalid as exc:
                raise _mrz_error(exc) from exc
            readings, swaps = _known_states(found)
            agreed = found.agreed
            reading = readings[0]
            self._check_document(kind, reading)
            # The printed zone only: above the MRZ (whose words would echo the MRZ).
            picture = picture.crop((0, 0, picture.width, round(picture.height * 0.62)))
        words, _, again = ocr.read_text(picture, thorough=side is not Side.BACK)
        specimen = MARK in words
        if specimen and not self.policy.accept_specimens:
            raise IdentityError("DOCUMENT_SPECIMEN", "this is a SPECIMEN, not an ID document")
        if side is Side.FRONT and not any(_looks_like_number(w) for w in words):
            raise IdentityError("SIDE_UNREADABLE", "no document number was found on the front")
        return SideResult(side, specimen, tuple(words), reading, readings, agreed=agreed,
                          swaps=swaps, numbers_again=tuple(again))

    def _check_document(self, kind: DocumentKind, reading: Mrz) -> None:
        state = reading.issuing_state
        if not self.policy.accepts(state, kind):
            raise IdentityError("DOCUMENT_NOT_ACCEPTED", f"a {kind.value} from {state} is not "
                                "accepted", state=state, document=kind.value)
        today = self.clock().date()
        if reading.expiry_date < today:
            raise IdentityError("DOCUMENT_EXPIRED", "the document expired on "
                                f"{reading.expiry_date.isoformat()}",
                                expiryDate=reading.expiry_date.isoformat())

    def _cross_check(self, session: _Session) -> VerifiedIdentity:
        kind = session.document
        mrz_side = session.sides[Side.BACK if kind is DocumentKind.ID_CARD else Side.DATA_PAGE]
        shown = session.sides[Side.FRONT if kind is DocumentKind.ID_CARD else Side.DATA_PAGE]
        return printed.cross_check(kind, mrz_side, shown)

    # liveness ----------------------------------------------------------------------

    def next_challenge(self, session_id: str) -> Challenge:
        """The open challenge, or the next one of the series (a new series after a
        failure, while attempts remain)."""
        with self._lock:
            session = self._get(session_id)
            if session.step is not Step.LIVENESS:
                raise IdentityError("WRONG_STEP", "liveness comes after the document"
                                    if session.step is Step.DOCUMENT else "already verified")
            now = self.clock()
            if session.open_challenge is not None and now <= session.open_challenge.deadline:
                return session.open_challenge
            if session.open_challenge is not None:
                self._liveness_failed(session)  # let lapse: the same as answered late
            if not session.challenges:
                if session.liveness_attempts >= self.policy.liveness_attempts:
                    session.failures = _LOCKED
                    raise IdentityError("IDENTITY_LOCKED", "too many liveness attempts")
                session.liveness_attempts += 1
                session.challenges = self._series(now)
                session.passed = 0
            index = self.policy.challenges - len(session.challenges) + 1
            template = session.challenges.pop(0)
            challenge = replace(template, issued_at=now, index=index,
                                deadline=now + dt.timedelta(
                                    seconds=self.policy.challenge_seconds))
            session.open_challenge = challenge
            return challenge

    def _series(self, now: dt.datetime) -> list[Challenge]:
        actions = list(CHALLENGE_ACTIONS)
        series = []
        for _ in range(self.policy.challenges):
            action = actions.pop(secrets.randbelow(len(actions)))
            count = 1 + secrets.randbelow(5) if action == "show-fingers" else None
            series.append(Challenge(secrets.token_urlsafe(16), action, count,
                                    secrets.token_urlsafe(16), now, now, 0,
                                    self.policy.challenges))
        return series

    def _liveness_failed(self, session: _Session) -> bool:
        """The series ends; after the last attempt the session locks at once (True)."""
        self._sessions.touch(session)
        session.open_challenge = None
        session.challenges = []
        session.passed = 0
        if session.liveness_attempts >= self.policy.liveness_attempts:
            session.failures = _LOCKED
        return session.failures >= _LOCKED

    def _answer_failed(self, session: _Session, error: IdentityError) -> IdentityError:
        """`error`, saying `locked` when it was the last attempt: the page then asks to
        start again, not to film once more."""
        if self._liveness_failed(session):
            error.extra["locked"] = True
        return error

    def answer_challenge(self, session_id: str, challenge_id: str, nonce: str,
                         frames: list[bytes]) -> SessionView:
        received = self.clock()
        with self._lock:
            session = self._get(session_id)
            if session.step is not Step.LIVENESS:
                raise IdentityError("WRONG_STEP", "no liveness challenge is open")
            challenge = session.open_challenge
            if challenge is None or not isinstance(challenge_id, str) or not hmac.compare_digest(
                    challenge.id.encode(), challenge_id.encode()):
                raise IdentityError("CHALLENGE_UNKNOWN", "this is not the open challenge")
            if not isinstance(nonce, str) or not hmac.compare_digest(challenge.nonce.encode(),
                                                                      nonce.encode()):
                raise self._answer_failed(session, IdentityError(
                    "CHALLENGE_BINDING", "the answer is not bound to the challenge (nonce)"))
            if received > challenge.deadline:
                raise self._answer_failed(session, IdentityError(
                    "CHALLENGE_LATE", "the challenge was answered after its deadline",
                    deadline=challenge.deadline.isoformat()))
            if (received - challenge.issued_at).total_seconds() < self.policy.min_answer_seconds:
                raise self._answer_failed(session, IdentityError(
                    "CHALLENGE_TOO_EARLY", "the challenge was answered faster than a person "
                    "can act"))
            digests, pictures = self._check_frames(session, frames)
            portrait = face_step.portrait_of(session.document, session.sides)
        # The face outside the lock: a quarter of a second, other sessions go on meanwhile.
        try:
            face_step.judge(challenge.action, pictures, portrait, self.policy.face_distance)
        except IdentityError as refused:
            with self._lock:
                session = self._get(session_id)
                if session.open_challenge is not None and \
                        session.open_challenge.id == challenge.id:
                    self._answer_failed(session, refused)
            raise
        with self._lock:
            session = self._get(session_id)
            if session.open_challenge is None or session.open_challenge.id != challenge.id:
                raise IdentityError("CHALLENGE_UNKNOWN", "this is not the open challenge")
            kept_until = self.clock() + dt.timedelta(days=self.policy.frames_kept_days)
            if digests & session.frame_digests or not self._frames.claim_identity_frames(
                    session.id, digests, kept_until):
                raise IdentityError("FRAMES_REPLAYED", "frames were already sent")
            session.frame_digests |= digests
            session.open_challenge = None
            session.passed += 1
            if session.passed >= self.policy.challenges:
                session.verified = True
            return self._view(session)

    def _check_frames(self, session: _Session, frames: list[bytes]
                      ) -> tuple[set[bytes], list[Image.Image]]:
        """The frames as pictures of one camera, each new to the service, and their
        digests."""
        low, high = self.policy.frames_per_answer
        if not isinstance(frames, list) or not low <= len(frames) <= high:
            raise IdentityError("FRAMES_INVALID", f"an answer has {low} to {high} frames")
        sizes = set()
        digests: set[bytes] = set()
        pictures = []
        for frame in frames:
            if not isinstance(frame, bytes) or len(frame) > self.policy.max_frame_bytes:
                raise IdentityError("FRAMES_INVALID", "each frame is an image of at most "
                                    f"{self.policy.max_frame_bytes} bytes")
            try:
                picture = ocr.load_image(frame)
            except ocr.ImageInvalid as exc:
                raise IdentityError("FRAMES_INVALID", str(exc)) from exc
            if picture.width < 160 or picture.height < 120:
                raise IdentityError("FRAMES_INVALID", "frames are at least 160 x 120")
            sizes.add(picture.size)
            digests.add(hashlib.sha256(picture.tobytes()).digest())
            pictures.append(picture)
        if len(sizes) != 1:
            raise IdentityError("FRAMES_INVALID", "all frames of an answer come from one "
                                "camera (one size)")
        if len(digests) != len(frames):
            raise IdentityError("FRAMES_INVALID", "the frames are copies of each other")
        if digests & session.frame_digests:
            raise IdentityError("FRAMES_REPLAYED", "frames were already sent in this session")
        if self._frames.foreign_identity_frames(session.id, digests):
            raise IdentityError("FRAMES_REPLAYED", "frames were sent in another session")
        return digests, pictures

    # results -----------------------------------------------------------------------

    def document_identity(self, session_id: str) -> VerifiedIdentity:
        """What the document step established, before liveness (bench/identity.py
        measures the reading with it); `identity` is the verified one."""
        with self._lock:
            identity = self._get(session_id).identity
            if identity is None:
                raise IdentityError("WRONG_STEP", "the document is not verified yet")
            return identity

    def identity(self, session_id: str) -> VerifiedIdentity:
        with self._lock:
            session = self._get(session_id)
            if not session.verified or session.identity is None:
                raise IdentityError("WRONG_STEP", "the identity is not verified yet")
            return session.identity

    def evidence(self, session_id: str, spki_der: bytes, *, given_names: str | None = None,
                 surname: str | None = None) -> IssuedEvidence:
        """Evidence for the signer's key: one key per session; asking again for the same
        key gives the same token while it is valid (a retried enrolment), never a
        second id. Names default to the document's; chosen ones must be among its words
        (issue 7 step 5), accents allowed."""
        with self._lock:
            session = self._get(session_id)
            if not session.verified or session.identity is None:
                raise IdentityError("WRONG_STEP", "the identity is not verified yet")
            identity = session.identity
            now = self.clock()
            try:
                key_hash = spki_sha256(spki_der)
                previous = session.evidence
                if previous is not None:
                    if previous.spki_sha256 != key_hash:
                        raise IdentityError("EVIDENCE_KEY_MISMATCH", "evidence was already "
                                            "issued for another key in this session")
                    if previous.expires_at <= now:
                        raise IdentityError("EVIDENCE_EXPIRED", "the evidence has expired: "
                                            "verify the identity again")
                    return previous
                given = _chosen(given_names, identity.given_names, "givenNames")
                family = _chosen(surname, identity.surname, "surname")
                state = countries.lookup(identity.issuing_state)
                if state is None or state.alpha2 is None:
                    raise IdentityError("STATE_UNSUPPORTED", "the issuing state has no ISO "
                                        "3166 code")
                subject = Subject(given_name=given, surname=family, country=state.alpha2,
                                  serial_number=f"{identity.document.semantics}{state.alpha2}"
                                                f"-{identity.document_number}")
                issued = self.signer.issue(subject, spki_der, now=now, lifetime=dt.timedelta(
                    minutes=self.policy.evidence_minutes))
            except EvidenceRefused as exc:
                raise IdentityError(exc.code, str(exc)) from exc
            session.evidence = issued
            return issued


def _chosen(text: str | None, document_words: tuple[str, ...], what: str) -> str:
    """The name to certify: the document's words (display case) by default, or the
    signer's spelling of some of them, in the document's order."""
    if text is None:
        if not document_words:
            raise IdentityError("NAME_INVALID", f"the document has no {what}")
        return names.display(document_words)
    try:
        plain, icao = names.words(text), names.words(text, icao=True)
    except names.NameInvalid as exc:
        raise IdentityError("NAME_INVALID", f"{what}: {exc}") from exc
    if not plain or not (_subsequence(plain, document_words)
                         or _subsequence(icao, document_words)):
        raise IdentityError("NAME_INVALID", f"{what} must be taken from the document's names")
    return " ".join(text.split())


def _subsequence(words: tuple[str, ...], of: tuple[str, ...]) -> bool:
    it = iter(of)
    return all(any(w == x for x in it) for w in words)


def _looks_like_number(word: str) -> bool:
    return 6 <= len(word) <= 20 and any(c.isdigit() for c in word) and word.isalnum()


_MRZ_CODES = {
    MrzReason.BAD_CHECK_DIGIT: "MRZ_CHECK_DIGIT",
    MrzReason.UNREADABLE: "MRZ_UNREADABLE",
    MrzReason.BAD_LENGTH: "MRZ_UNREADABLE",
    MrzReason.BAD_CHARACTER: "MRZ_UNREADABLE",
    MrzReason.BAD_DATE: "MRZ_INVALID",
    MrzReason.BAD_FIELD: "MRZ_INVALID",
}


def _known_states(found: ocr.MrzReading) -> tuple[tuple[Mrz, ...], tuple[int, ...]]:
    """The readings (with their swaps) whose issuing state and nationality are codes a
    state has, when some are (countries.py): no check digit covers them, and a reading
    of B for D must not decide that the document is not accepted."""
    known = [i for i, r in enumerate(found.readings)
             if countries.lookup(r.issuing_state) and countries.lookup(r.nationality)]
    if not known or len(known) == len(found.readings):
        return found.readings, found.swaps
    return (tuple(found.readings[i] for i in known),
            tuple(found.swaps[i] for i in known) if found.swaps else ())


def _mrz_error(exc: MrzInvalid) -> IdentityError:
    extra: dict[str, Any] = {"reason": exc.reason.value}
    if exc.field:
        extra["field"] = exc.field
    return IdentityError(_MRZ_CODES[exc.reason], str(exc), **extra)
