"""The identity flow over HTTP: an aiohttp sub-application the portal mounts (e.g. at
`/api/identity`). JSON bodies; images as base64 in JSON, as multipart form parts, or
as a raw `image/png` / `image/jpeg` body. Errors follow portal/API.md's shape:
`{"error": CODE, "message": str, ...extra}` with CODE from `STATUS` below.

The session id in the path is the capability: 256 random bits, given to the signer's
page by the portal (and to their phone through the "continue on my smartphone" QR).

    POST /sessions                             {"document": "id-card"|"passport"}
                                               (the signer comes from `signer_of`)
    GET  /sessions/{sid}                       -> session
    PUT  /sessions/{sid}/sides/{side}          image -> session   (front|back|data-page)
    POST /sessions/{sid}/challenges/next       -> challenge (with "frames": {"min", "max"},
                                               how many pictures an answer carries)
    POST /sessions/{sid}/challenges/{cid}      {"nonce", "frames": [b64]} -> session
    GET  /sessions/{sid}/identity              -> identity read from the document
    POST /sessions/{sid}/evidence              {"publicKey": b64 SPKI DER,
                                                "givenNames"?, "surname"?} -> evidence
    GET  /sessions/{sid}/handoff               -> {"url", "qrPng": b64}
    GET  /sessions/{sid}/handoff.png           -> the QR code image
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web

from ground.qr import qr_png
from portal.body_schema import BodySchema, Schema, closed
from portal.identity.model import (
    Challenge,
    DocumentKind,
    IdentityError,
    IdentityProvider,
    SessionView,
)
from portal.identity.ocr import OcrUnavailable
from portal.identity.specimen import Side
from portal.json_body import JsonBodyError, loads_bounded

log = logging.getLogger(__name__)
T = TypeVar("T")

# Every code the identity flow answers, and its HTTP status: one place.
STATUS = {
    "BAD_REQUEST": 400, "KEY_INVALID": 400, "UNAUTHORIZED": 401,
    "IDENTITY_SESSION_UNKNOWN": 404, "CHALLENGE_UNKNOWN": 404, "WRONG_STEP": 409,
    "FRAMES_REPLAYED": 409, "EVIDENCE_KEY_MISMATCH": 409, "IDENTITY_SESSION_CHANGED": 409,
    "IDENTITY_SESSION_EXPIRED": 410,
    "EVIDENCE_EXPIRED": 410, "PAYLOAD_TOO_LARGE": 413, "UNSUPPORTED_MEDIA_TYPE": 415,
    "IMAGE_INVALID": 422, "MRZ_UNREADABLE": 422, "MRZ_CHECK_DIGIT": 422, "MRZ_INVALID": 422,
    "DOCUMENT_EXPIRED": 422, "DOCUMENT_NOT_ACCEPTED": 422, "DOCUMENT_SPECIMEN": 422,
    "SIDE_UNREADABLE": 422, "PRINTED_UNREADABLE": 422, "SIDES_MISMATCH": 422,
    "CHALLENGE_BINDING": 422,
    "CHALLENGE_LATE": 422, "CHALLENGE_TOO_EARLY": 422, "FRAMES_INVALID": 422,
    "NAME_INVALID": 422, "STATE_UNSUPPORTED": 422, "IDENTITY_LOCKED": 423,
    "DOCUMENT_NO_FACE": 422, "FACE_NOT_FOUND": 422, "FACE_SEVERAL": 422,
    "FACE_MISMATCH": 422, "FACE_STILL": 422, "CHALLENGE_NOT_SEEN": 422,
    "OCR_UNAVAILABLE": 503, "INTERNAL": 500,
}
MAX_JSON = 64 * 1024
SignerOf = Callable[[web.Request], Awaitable[str]]

PROVIDER = web.AppKey("identity_provider", IdentityProvider)
EXECUTOR = web.AppKey("identity_executor", ThreadPoolExecutor)
CONTINUE_URL = web.AppKey("identity_continue_url", str)
SIGNER_OF: web.AppKey[SignerOf] = web.AppKey("identity_signer_of")

# The JSON bodies' schemas (JSON Schema 2020-12); sizes that depend on the provider's
# policy (images, frames) are checked by the handlers.
DOCUMENT: Schema = {"type": "string", "enum": [kind.value for kind in DocumentKind]}
NEW_SESSION = BodySchema(closed({"document": DOCUMENT}, required=["document"]))
SIDE = BodySchema(closed({"image": {"type": "string", "contentEncoding": "base64"}},
                         required=["image"]))
ANSWER = BodySchema(closed({"nonce": {"type": "string"},
                            "frames": {"type": "array", "items": {"type": "string"}}},
                           required=["nonce", "frames"]))
_NAME: Schema = {"type": ["string", "null"]}
EVIDENCE = BodySchema(closed({"publicKey": {"type": "string"}, "givenNames": _NAME,
                              "surname": _NAME}, required=["publicKey"]))


def error_response(code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra},
                             status=STATUS.get(code, 500))


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    try:
        return await handler(request)
    except IdentityError as exc:
        return error_response(exc.code, str(exc), **exc.extra)
    except OcrUnavailable as exc:
        log.error("identity: %s", exc)
        return error_response("OCR_UNAVAILABLE", "document reading is unavailable")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("identity: internal error on %s %s", request.method, request.path)
        return error_response("INTERNAL", "internal error")


async def _run(request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Provider calls block (OCR, locks): run them on the identity worker threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR],
                                      functools.partial(fn, *args, **kwargs))


async def _read(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise IdentityError("PAYLOAD_TOO_LARGE", f"the body is larger than {limit} bytes")
    data = await request.content.read(limit + 1)
    while len(data) <= limit:
        more = await request.content.read(limit + 1 - len(data))
        if not more:
            break
        data += more
    if len(data) > limit:
        raise IdentityError("PAYLOAD_TOO_LARGE", f"the body is larger than {limit} bytes")
    return data


async def _json(request: web.Request, schema: BodySchema, limit: int = MAX_JSON
                ) -> dict[str, Any]:
    """The body as a JSON object that fits `schema`: BAD_REQUEST naming the `field` and the
    `rule` it breaks otherwise (portal/body_schema.py)."""
    if request.content_type != "application/json":
        raise IdentityError("UNSUPPORTED_MEDIA_TYPE", "send application/json")
    try:  # depth-bounded: a 50,000-deep array is a 400, not a RecursionError (500)
        body = loads_bounded(await _read(request, limit))
    except JsonBodyError as exc:
        raise IdentityError("BAD_REQUEST", str(exc)) from None
    if not isinstance(body, dict):
        raise IdentityError("BAD_REQUEST", "the body must be a JSON object")
    problem = schema.violation(body)
    if problem is not None:
        raise IdentityError("BAD_REQUEST", str(problem), field=problem.field,
                            rule=problem.rule)
    return body


def _b64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 4:
        raise IdentityError("BAD_REQUEST" if not isinstance(value, str) else
                            "PAYLOAD_TOO_LARGE", f"{what}: base64, at most {limit} bytes")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # a data: URL from a canvas
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise IdentityError("BAD_REQUEST", f"{what}: not base64") from None


async def _multipart_files(request: web.Request, limit: int) -> dict[str, list[bytes]]:
    """Parts of a multipart/form-data body by name, never more than `limit` in all."""
    reader = await request.multipart()
    parts: dict[str, list[bytes]] = {}
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            raise IdentityError("BAD_REQUEST", "multipart parts must be named fields")
        chunks = []
        while chunk := await part.read_chunk():
            total += len(chunk)
            if total > limit:
                raise IdentityError("PAYLOAD_TOO_LARGE", f"the body is larger than {limit} "
                                    "bytes")
            chunks.append(chunk)
        parts.setdefault(part.name, []).append(b"".join(chunks))
    return parts


def _policy_limit(request: web.Request, name: str, default: int) -> int:
    policy = getattr(request.app[PROVIDER], "policy", None)
    return int(getattr(policy, name, default))


def _session_json(view: SessionView) -> dict[str, Any]:
    return view.as_json()


def _frames_per_answer(request: web.Request) -> tuple[int, int]:
    """How many frames an answer carries: the provider's policy, else 4 to 8."""
    policy = getattr(request.app[PROVIDER], "policy", None)
    low, high = getattr(policy, "frames_per_answer", (4, 8))
    return int(low), int(high)


def _challenge_json(challenge: Challenge, frames: tuple[int, int]) -> dict[str, Any]:
    # The page keeps filming until it has `min` distinct frames: an answer with fewer is
    # refused (FRAMES_INVALID), so it must know the number rather than guess it.
    return {"id": challenge.id, "action": challenge.action, "count": challenge.count,
            "nonce": challenge.nonce, "issuedAt": challenge.issued_at.isoformat(),
            "deadline": challenge.deadline.isoformat(),
            "seconds": (challenge.deadline - challenge.issued_at).total_seconds(),
            "index": challenge.index, "of": challenge.of,
            "frames": {"min": frames[0], "max": frames[1]}}


async def open_session(request: web.Request) -> web.Response:
    signer = await request.app[SIGNER_OF](request)
    document = (await _json(request, NEW_SESSION))["document"]
    view = await _run(request, request.app[PROVIDER].open_session, signer,
                      DocumentKind(document))
    return web.json_response(_session_json(view), status=201)


async def get_session(request: web.Request) -> web.Response:
    view = await _run(request, request.app[PROVIDER].session, request.match_info["sid"])
    return web.json_response(_session_json(view))


async def put_side(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    try:
        side = Side(request.match_info["side"])
    except ValueError:
        raise IdentityError("BAD_REQUEST", "side: front, back or data-page") from None
    limit = _policy_limit(request, "max_image_bytes", 8 * 1024 * 1024)
    if request.content_type in ("image/png", "image/jpeg"):
        image = await _read(request, limit)
    elif request.content_type == "multipart/form-data":
        parts = await _multipart_files(request, limit + 4096)
        if set(parts) != {"image"} or len(parts["image"]) != 1:
            raise IdentityError("BAD_REQUEST", "one multipart part named 'image'")
        image = parts["image"][0]
    else:
        image = _b64((await _json(request, SIDE, limit * 4 // 3 + 1024))["image"], "image",
                     limit)
    view = await _run(request, request.app[PROVIDER].submit_side, sid, side, image)
    return web.json_response(_session_json(view))


async def next_challenge(request: web.Request) -> web.Response:
    challenge = await _run(request, request.app[PROVIDER].next_challenge,
                           request.match_info["sid"])
    return web.json_response(_challenge_json(challenge, _frames_per_answer(request)))


async def answer_challenge(request: web.Request) -> web.Response:
    sid, cid = request.match_info["sid"], request.match_info["cid"]
    frame_limit = _policy_limit(request, "max_frame_bytes", 1024 * 1024)
    _, high = _frames_per_answer(request)
    total = frame_limit * high
    if request.content_type == "multipart/form-data":
        parts = await _multipart_files(request, total + 4096)
        if set(parts) - {"nonce", "frame"} or len(parts.get("nonce", [])) != 1:
            raise IdentityError("BAD_REQUEST", "multipart parts: 'nonce' and 'frame' ones")
        nonce: Any = parts["nonce"][0].decode(errors="replace")
        frames = parts.get("frame", [])
    else:
        answer = await _json(request, ANSWER, total * 4 // 3 + 4096)
        nonce, raw = answer["nonce"], answer["frames"]
        if len(raw) > high:  # the provider's policy, not the body's shape
            raise IdentityError("FRAMES_INVALID", f"frames: a list of at most {high} images")
        frames = [_b64(item, "frame", frame_limit) for item in raw]
    view = await _run(request, request.app[PROVIDER].answer_challenge, sid, cid, nonce, frames)
    return web.json_response(_session_json(view))


async def get_identity(request: web.Request) -> web.Response:
    identity = await _run(request, request.app[PROVIDER].identity, request.match_info["sid"])
    return web.json_response(identity.as_json())


async def post_evidence(request: web.Request) -> web.Response:
    fields = await _json(request, EVIDENCE)
    spki = _b64(fields["publicKey"], "publicKey", 2048)
    given, surname = fields.get("givenNames"), fields.get("surname")
    issued = await _run(request, request.app[PROVIDER].evidence, request.match_info["sid"],
                        spki, given_names=given, surname=surname)
    return web.json_response({"evidence": issued.token, "id": issued.id,
                              "spkiSha256": issued.spki_sha256,
                              "expiresAt": issued.expires_at.isoformat()})


async def _handoff_url(request: web.Request) -> str:
    sid = request.match_info["sid"]
    await _run(request, request.app[PROVIDER].session, sid)  # known and not expired
    return request.app[CONTINUE_URL].format(session=sid)


async def handoff(request: web.Request) -> web.Response:
    url = await _handoff_url(request)
    return web.json_response({"url": url, "qrPng": base64.b64encode(qr_png(url)).decode()})


async def handoff_png(request: web.Request) -> web.Response:
    url = await _handoff_url(request)
    return web.Response(body=qr_png(url), content_type="image/png",
                        headers={"Cache-Control": "no-store"})


async def _no_signer(request: web.Request) -> str:
    raise IdentityError("UNAUTHORIZED", "identity sessions are opened by the portal")


def create_identity_app(provider: IdentityProvider, *, continue_url: str,
                        signer_of: SignerOf | None = None, workers: int = 2,
                        evidence_routes: bool = True) -> web.Application:
    """The sub-application. `continue_url` is the smartphone link with `{session}` in it
    (e.g. "https://portal.example.test/id/{session}"); `signer_of` tells who opens a
    session from the request (the portal checks its invitation link there); without it
    sessions are opened by calling the provider directly. `evidence_routes=False` leaves
    out the identity read and the evidence routes: where the session id travels in a
    QR code, whoever saw it could otherwise ask evidence for their own key first; the
    portal asks the provider itself, for the key of the signer it knows."""
    if "{session}" not in continue_url:
        raise ValueError("continue_url must contain {session}")
    app = web.Application(middlewares=[_errors])
    app[PROVIDER] = provider
    app[CONTINUE_URL] = continue_url
    app[SIGNER_OF] = signer_of or _no_signer

    async def executor(app: web.Application) -> AsyncIterator[None]:
        app[EXECUTOR] = ThreadPoolExecutor(max_workers=workers,
                                           thread_name_prefix="identity")
        yield
        app[EXECUTOR].shutdown(wait=True, cancel_futures=True)

    app.cleanup_ctx.append(executor)
    app.router.add_post("/sessions", open_session)
    app.router.add_get("/sessions/{sid}", get_session)
    app.router.add_put("/sessions/{sid}/sides/{side}", put_side)
    app.router.add_post("/sessions/{sid}/challenges/next", next_challenge)
    app.router.add_post("/sessions/{sid}/challenges/{cid}", answer_challenge)
    if evidence_routes:
        app.router.add_get("/sessions/{sid}/identity", get_identity)
        app.router.add_post("/sessions/{sid}/evidence", post_evidence)
    app.router.add_get("/sessions/{sid}/handoff", handoff)
    app.router.add_get("/sessions/{sid}/handoff.png", handoff_png)
    return app
