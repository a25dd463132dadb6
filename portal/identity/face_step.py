"""The reference identity service's face steps (issue 17): the portrait read from the
document's photo side, each liveness answer judged on the face (liveness.py), and their
refusals as the service's codes (the frames seen in any session: frames.py)."""

from __future__ import annotations

from collections.abc import Sequence
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
