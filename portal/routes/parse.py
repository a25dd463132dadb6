"""Request bodies and their fields, read the one way every route reads them: the body
through portal/json_body.py (typed, bounded), each field checked with a message naming
it; a bad field is BAD_REQUEST (400)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Any

from aiohttp import web

from portal import legal
from portal.errors import Code, PortalError
from portal.json_body import read_json

EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]{1,255}$")
PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164


async def read_body(request: web.Request) -> dict[str, Any]:
    return await read_json(request)  # the one JSON reader (portal/json_body.py)


def string(body: dict[str, Any], key: str, *, max_len: int = 200, required: bool = True,
           where: str = "") -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_len:
        raise PortalError(Code.BAD_REQUEST, f"{where}{key}: a string of 1 to {max_len} "
                          "characters")
    return value.strip()


def boolean(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise PortalError(Code.BAD_REQUEST, f"{key}: true or false")
    return value


def email(body: dict[str, Any], key: str = "email", *, where: str = "") -> str:
    value = string(body, key, max_len=320, where=where)
    if not EMAIL.match(value):
        raise PortalError(Code.BAD_REQUEST, f"{where}{key}: an e-mail address")
    return value


def phone(body: dict[str, Any], *, required: bool = True, where: str = "") -> str:
    """An E.164 number (spaces dropped); "" when not required and absent."""
    value = string(body, "phone", max_len=16, required=required, where=where).replace(" ", "")
    if value and not PHONE.match(value):
        raise PortalError(Code.BAD_REQUEST, f"{where}phone: E.164, e.g. +33612345678")
    return value


def b64(value: Any, what: str, max_bytes: int) -> bytes:
    if not isinstance(value, str) or len(value) > max_bytes * 4 // 3 + 8:
        raise PortalError(Code.BAD_REQUEST, f"{what}: base64, at most {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PortalError(Code.BAD_REQUEST, f"{what}: not base64") from None


def b64_list(body: dict[str, Any], key: str, *, max_items: int, max_bytes: int
             ) -> list[bytes]:
    values = body.get(key)
    if not isinstance(values, list) or len(values) > max_items:
        raise PortalError(Code.BAD_REQUEST, f"{key}: a list of at most {max_items} items")
    return [b64(v, f"{key}[{i}]", max_bytes) for i, v in enumerate(values)]


def certificate_and_chain(body: dict[str, Any]) -> tuple[bytes, list[bytes]]:
    """A DER certificate and its optional chain, as the signer's page sends them."""
    certificate = b64(body.get("certificate"), "certificate", 16384)
    chain = b64_list(body, "chain", max_items=8, max_bytes=16384) if "chain" in body else []
    return certificate, chain


def consent_records(accepted: list[Any]) -> list[tuple[str, str, str, str]]:
    """(kind, version, lang, sha256) of each accepted text; CONSENT_OUTDATED when the
    text shown is no longer the current one."""
    records = []
    for item in accepted:
        if not isinstance(item, dict):
            raise PortalError(Code.BAD_REQUEST, "accepted: [{kind, version, sha256}]")
        kind, version = string(item, "kind"), string(item, "version")
        lang = legal.matches(kind, version, string(item, "sha256"))
        if lang is None:
            raise PortalError(Code.CONSENT_OUTDATED, f"{kind} {version} is not the current "
                              "text: reload the page")
        records.append((kind, version, lang, string(item, "sha256")))
    return records


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
