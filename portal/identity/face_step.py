"""The reference identity service's face steps (issue 17): the portrait read from the
document's photo side, each liveness answer judged on the face (liveness.py), their
refusals as the service's codes, and the frames the service has seen in any session."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from PIL import Image

from portal.identity import faces, liveness, ocr
from portal.identity.model import DocumentKind, IdentityError, SideResult
from portal.identity.specimen import Side

PHOTO_SIDES = (Side.FRONT, Side.DATA_PAGE)


def with_portrait(result: SideResult, image: bytes) -> SideResult:
    """The side's result with the portrait's descriptor when it is the photo side;
    DOCUMENT_NO_FACE when that side shows no face."""
    if result.side not in PHOTO_SIDES:
        return result
    try:
        picture = ocr.load_image(image)
    except ocr.ImageInvalid as exc:
        raise IdentityError("IMAGE_INVALID", str(exc)) from exc
    try:
        face = faces.portrait(picture)
    except faces.FaceNotFound:
        raise IdentityError("DOCUMENT_NO_FACE", "no face was found in the document's "
                            "photo") from None
    return replace(result, portrait=faces.descriptor(picture, face))


def portrait_of(kind: DocumentKind, sides: dict[Side, SideResult]) -> tuple[float, ...]:
    """The portrait read from the verified document (its photo side is the first)."""
    result = sides.get(kind.sides[0])
    if result is None or result.portrait is None:
        raise IdentityError("DOCUMENT_NO_FACE", "no portrait was read from the document: "
                            "start again")
    return result.portrait


def judge(action: str, frames: Sequence[Image.Image], portrait: tuple[float, ...],
          threshold: float) -> None:
    """The answer shows the document's person doing `action`, or the refusal's code:
    FACE_NOT_FOUND, FACE_SEVERAL, FACE_MISMATCH, FACE_STILL, CHALLENGE_NOT_SEEN."""
    try:
        liveness.judge(action, frames, portrait, threshold)
    except liveness.LivenessFailed as exc:
        raise IdentityError(exc.verdict.value, str(exc), **exc.extra) from None


class FrameLedger:
    """Digests of the frames the service accepted, whatever the session, so that frames
    recorded in one session cannot answer another's challenge. The oldest are
    forgotten past `limit` (a session's frames are a few dozen)."""

    def __init__(self, limit: int = 200_000) -> None:
        self._seen: dict[bytes, str] = {}
        self._limit = limit

    def foreign(self, session_id: str, digests: Iterable[bytes]) -> bool:
        return any(self._seen.get(d, session_id) != session_id for d in digests)

    def add(self, session_id: str, digests: Iterable[bytes]) -> None:
        for digest in digests:
            self._seen[digest] = session_id
        while len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]
