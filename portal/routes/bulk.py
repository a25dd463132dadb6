"""Bulk send (portal/API.md "Bulk send"): one template and a CSV of signers (RFC 4180,
a header line naming for each role R the columns `R.email`, `R.name`, `R.phone`,
`R.lang`, and optionally `title`) make one transaction per line.

Every line is checked before anything is kept: a bad cell, a missing column, an unknown
one or an empty line refuses the whole CSV with CSV_INVALID listing each problem by line
and column. A good CSV becomes a bulk send in the store, one pending row per line; the
worker (`run`, one per portal process) leases rows, starts their transactions and marks
each done or failed, so a restart resumes the work and two processes share it."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
from typing import Any

from aiohttp import web

from ground.sql import Cursor
from portal.accounts import Role
from portal.body_schema import BodySchema, closed, openapi_component, openapi_request
from portal.errors import Code, PortalError
from portal.routes.access import member
from portal.routes.parse import iso, read_body
from portal.routes.state import Portal
from portal.routes.templates import requester_of, start, template_at
from portal.store import Transaction
from portal.store.templates import BulkSend, LeasedRow

log = logging.getLogger(__name__)

BULK = openapi_request("/api/v1/workspaces/{ws}/templates/{tpl}/bulk", "post")
MAX_LINES = 1000
_FIELDS = ("email", "name", "phone", "lang")
# One role's cells, as the FromTemplate body's signer (portal/openapi.json).
_PERSON = BodySchema(closed({
    "email": openapi_component("Email"), "name": {"type": "string", "maxLength": 200},
    "phone": openapi_component("Phone"), "lang": {"enum": ["en", "fr"]}},
    required=["email"]))
_TITLE = BodySchema(closed({"title": {"type": "string", "maxLength": 200}}))
POLL = 5.0  # seconds between looks at the store when nothing wakes the worker


def _problem(line: int, column: str, message: str) -> dict[str, Any]:
    return {"line": line, "column": column, "message": message}


def parse_csv(text: str, roles: list[str]) -> list[tuple[int, list[dict[str, Any]]]]:
    """(line, [{"role", "email", ...} per role, in role order] + a "title" key on the
    first when the CSV has one) per data line; CSV_INVALID naming every bad line and
    column."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise PortalError(Code.CSV_INVALID, f"line {reader.line_num}: {exc}",
                          errors=[_problem(reader.line_num, "", str(exc))]) from None
    if not rows:
        raise PortalError(Code.CSV_INVALID, "the CSV is empty", errors=[
            _problem(1, "", "a header line is required")])
    header = [h.strip() for h in rows[0]]
    problems: list[dict[str, Any]] = []
    known = {f"{r}.{f}" for r in roles for f in _FIELDS} | {"title"}
    for column in header:
        if column not in known:
            problems.append(_problem(1, column, "not a column of this template's roles"))
    for role in roles:
        if f"{role}.email" not in header:
            problems.append(_problem(1, f"{role}.email", "required (the role's signer)"))
    if len(set(header)) != len(header):
        problems.append(_problem(1, "", "a column is named twice"))
    if len(rows) - 1 > MAX_LINES:
        problems.append(_problem(MAX_LINES + 2, "", f"at most {MAX_LINES} lines"))
    if len(rows) < 2:
        problems.append(_problem(2, "", "no line to send"))
    if problems:
        raise _invalid(problems)
    parsed = []
    for number, cells in enumerate(rows[1:], start=2):
        if len(cells) != len(header):
            problems.append(_problem(number, "", f"{len(cells)} cells, the header has "
                                     f"{len(header)}"))
            continue
        values = {h: c.strip() for h, c in zip(header, cells, strict=True)}
        people = []
        for role in roles:
            person = {f: values[f"{role}.{f}"] for f in _FIELDS
                      if values.get(f"{role}.{f}")}
            broken = _PERSON.violation(person)
            if broken is not None:
                problems.append(_problem(number, f"{role}.{broken.field}", broken.text))
            people.append({"role": role, **person})
        title = values.get("title", "")
        broken = _TITLE.violation({"title": title})
        if broken is not None:
            problems.append(_problem(number, "title", broken.text))
        if title:
            people[0]["title"] = title
        parsed.append((number, people))
    if problems:
        raise _invalid(problems)
    return parsed


def _invalid(problems: list[dict[str, Any]]) -> PortalError:
    first = problems[0]
    where = f"line {first['line']}" + (f", column {first['column']}" if first["column"]
                                       else "")
    return PortalError(Code.CSV_INVALID, f"{where}: {first['message']}"
                       + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                       errors=problems[:100])


def bulk_json(bulk: BulkSend) -> dict[str, Any]:
    counts = {state: sum(1 for r in bulk.rows if r.state == state)
              for state in ("pending", "done", "failed")}
    return {"id": bulk.id, "templateId": bulk.template_id, "createdAt": iso(bulk.created_at),
            "total": len(bulk.rows), **counts,
            "rows": [{"line": r.line, "state": r.state, "transactionId": r.transaction_id,
                      "error": r.error, "emails": [s["email"] for s in r.signers]}
                     for r in bulk.rows]}


async def bulk_send(request: web.Request) -> web.Response:
    portal, who, template = await template_at(request, Role.REQUESTER)
    fields = await read_body(request, BULK)
    rows = parse_csv(fields["csv"], [r["role"] for r in template.body["roles"]])
    requester = requester_of(who, fields.get("requester"))
    bulk = await asyncio.to_thread(portal.store.add_bulk, template, requester, who.user_id,
                                   rows)
    portal.bulk_wake.set()
    log.info("bulk send %s: %d line(s) from template %s", bulk.id, len(rows), template.id)
    return web.json_response(bulk_json(bulk), status=202)


async def get_bulk(request: web.Request) -> web.Response:
    workspace = request.match_info["ws"]
    portal, _, _ = await member(request, workspace, Role.VIEWER)
    bulk = await asyncio.to_thread(portal.store.bulk, workspace, request.match_info["bulk"])
    return web.json_response(bulk_json(bulk))


async def run(portal: Portal) -> None:
    """The worker: pending rows whenever `portal.bulk_wake` is set, and every POLL."""
    while True:
        portal.bulk_wake.clear()
        try:
            await work(portal)
        except Exception:
            log.exception("bulk send rows failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(portal.bulk_wake.wait(), timeout=POLL)


async def work(portal: Portal) -> int:
    """Every pending row, leased a few at a time; how many were done or failed."""
    count = 0
    while leased := await asyncio.to_thread(portal.store.lease_bulk_rows):
        for row in leased:
            await _row(portal, row)
            count += 1
    return count


async def _row(portal: Portal, row: LeasedRow) -> None:
    bulk = row.bulk
    people = [dict(p) for p in row.signers]
    title = people[0].pop("title", None) if people else None

    def started(cur: Cursor, tx: Transaction) -> None:
        # With the transaction, in its database transaction: never two for one line.
        portal.store.bulk_row_started(cur, bulk.id, row.line, tx.id)

    try:
        tx = await start(portal, bulk.template_id, bulk.template, bulk.workspace_id,
                         bulk.created_by, bulk.requester, people, title, started)
    except PortalError as exc:  # this line cannot make a transaction
        await asyncio.to_thread(portal.store.bulk_row_done, bulk.id, row.line,
                                transaction_id=None, error=f"{exc.code}: {exc}")
        return
    except Exception as exc:  # a passing fault (database, blob store): try again
        log.exception("bulk send %s line %d", bulk.id, row.line)
        await asyncio.to_thread(portal.store.bulk_row_done, bulk.id, row.line,
                                transaction_id=None, error=type(exc).__name__,
                                retry=True)
        return
    log.info("bulk send %s line %d: transaction %s", bulk.id, row.line, tx.id)
