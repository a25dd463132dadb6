"""Request bodies, read the one way every route reads them: through portal/json_body.py
(typed, bounded) against the route's JSON Schema (portal/body_schema.py), which refuses a
body of the wrong shape with BAD_REQUEST (400) naming the field and the rule. What a
schema cannot say stays here: decoding base64 within a configured size, consents against
the current texts, normalising E.164 numbers."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from aiohttp import web

from portal import legal
from portal.body_schema import BodySchema, Schema, base64_string, closed
from portal.errors import Code, PortalError
from portal.json_body import read_json

MAX_CERTIFICATE = 16384  # bytes of DER
CERTIFICATE: Schema = base64_string(MAX_CERTIFICATE)
CHAIN: Schema = {"type": "array", "maxItems": 8, "items": CERTIFICATE}
CERTIFICATE_FIELDS: Schema = {"certificate": CERTIFICATE, "chain": CHAIN}


def accepted_texts(kinds: tuple[str, ...]) -> Schema:
    """`accepted`: the texts of `kinds` the signer accepted, as the view listed them."""
    return {"type": "array", "maxItems": len(kinds), "items": closed({
        "kind": {"type": "string", "enum": list(kinds)},
        "version": {"type": "string", "minLength": 1, "maxLength": 64},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                   "description": "the hex SHA-256 of the text shown"},
    }, required=["kind", "version", "sha256"])}


async def read_body(request: web.Request, schema: BodySchema) -> dict[str, Any]:
    return await read_json(request, schema)  # the one JSON reader (portal/json_body.py)


def b64(value: str, what: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a base64 field whose type and length its schema checked; `max_bytes`
    for a bound the schema cannot know (a configured size)."""
    if max_bytes is not None and len(value) > max_bytes * 4 // 3 + 8:
        raise PortalError(Code.BAD_REQUEST, f"{what}: base64, at most {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PortalError(Code.BAD_REQUEST, f"{what}: not base64") from None


def b64_list(values: list[str], what: str) -> list[bytes]:
    return [b64(v, f"{what}[{i}]") for i, v in enumerate(values)]


def e164(number: str) -> str:
    """An E.164 number as stored: the single spaces the schema allows dropped."""
    return "".join(number.split())


def certificate_and_chain(fields: dict[str, Any]) -> tuple[bytes, list[bytes]]:
    """A DER certificate and its optional chain, as the signer's page sends them."""
    return b64(fields["certificate"], "certificate"), b64_list(fields.get("chain", []),
                                                               "chain")


def consent_records(accepted: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    """(kind, version, lang, sha256) of each accepted text; CONSENT_OUTDATED when the
    text shown is no longer the current one."""
    records = []
    for item in accepted:
        kind, version, sha256 = item["kind"], item["version"], item["sha256"]
        lang = legal.matches(kind, version, sha256)
        if lang is None:
            raise PortalError(Code.CONSENT_OUTDATED, f"{kind} {version} is not the current "
                              "text: reload the page")
        records.append((kind, version, lang, sha256))
    return records


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
