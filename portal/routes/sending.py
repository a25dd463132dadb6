"""Sending a transaction with its parameters (portal/API.md "Transaction parameters"):
from a request body (`POST .../transactions`), a template, or a bulk send's row. The
body's shape is checked by its JSON Schema; what a schema cannot say (a group for every
signer exactly when the order is by groups, an appearance's field or page and
rectangle) is checked here, each refusal naming its field."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ground.sql import Cursor
from portal.document_names import document_name
from portal.errors import Code, PortalError
from portal.intake import content_policy, record
from portal.intake import inspect as inspect_document
from portal.routes.parse import b64
from portal.routes.state import Portal
from portal.store import NewDocument, NewSigner, SignerStatus, Transaction
from portal.store.parameters import Appearance, TxParameters
from portal.store.turns import SigningOrder, turns_of

DEFAULT_DAYS = 14
DEFAULT_LEVEL = "B-LT"


def refuse(field: str, why: str) -> PortalError:
    return PortalError(Code.BAD_REQUEST, f"{field}: {why}", field=field)


def appearance_of(value: dict[str, Any] | None, field: str) -> Appearance | None:
    """A signer's `appearance`: {"field": name} or {"page": n, "rect": [x1, y1, x2, y2]}."""
    if not value:
        return None
    if "field" in value:
        if set(value) != {"field"}:
            raise refuse(field, "either a field, or a page and a rect")
        return Appearance(field=value["field"])
    if "page" not in value or "rect" not in value:
        raise refuse(f"{field}.{'rect' if 'page' in value else 'page'}",
                     "required without a field")
    x1, y1, x2, y2 = (float(v) for v in value["rect"])
    if not (x1 < x2 and y1 < y2):
        raise refuse(f"{field}.rect", "[x1, y1, x2, y2] with x1 < x2 and y1 < y2")
    return Appearance(page=int(value["page"]), rect=(x1, y1, x2, y2))


def parameters_of(body: dict[str, Any], signers: Sequence[dict[str, Any]],
                  template_id: str | None = None) -> tuple[TxParameters, list[int]]:
    """The parameters of a transaction body (or a template's `parameters` with its
    roles as `signers`) and each signer's turn."""
    order = SigningOrder(body.get("signingOrder") or (
        SigningOrder.SEQUENTIAL if body.get("sequential", True) else SigningOrder.PARALLEL))
    groups: list[int | None] = []
    for i, signer in enumerate(signers):
        group = signer.get("group")
        if order is SigningOrder.GROUPS and group is None:
            raise refuse(f"signers[{i}].group", "required when signingOrder is groups")
        if order is not SigningOrder.GROUPS and group is not None:
            raise refuse(f"signers[{i}].group", "only when signingOrder is groups")
        groups.append(group)
    appearances = {}
    for i, signer in enumerate(signers):
        appearance = appearance_of(signer.get("appearance"), f"signers[{i}].appearance")
        if appearance is not None:
            appearances[i] = appearance
    languages = tuple(body.get("languages") or ("en", "fr"))
    parameters = TxParameters(
        signing_order=order, reminder_days=body.get("reminderDays"),
        second_factor=body.get("secondFactor", "sms"), languages=languages,
        download_unsigned=body.get("downloadUnsigned", True),
        message=(body.get("message") or "").strip() or None, template_id=template_id,
        appearances=appearances)
    return parameters, turns_of(order, len(signers), groups)


@dataclass(frozen=True)
class Outline:
    """Everything a new transaction needs but its signers' people."""

    workspace_id: str
    created_by: str | None
    title: str
    requester_name: str
    requester_email: str
    documents: tuple[NewDocument, ...]
    level: str = DEFAULT_LEVEL
    days: int = DEFAULT_DAYS
    qualified: bool = True
    messaging: bool = True


async def send(portal: Portal, outline: Outline, signers: list[NewSigner],
               parameters: TxParameters, turns: list[int],
               also: Callable[[Cursor, Transaction], None] | None = None) -> Transaction:
    """Create the transaction with its parameters in one database transaction (with
    `also`'s rows: a bulk row marked done), then invite the signers whose turn it is."""
    if outline.level != "B-B" and not portal.config.timestamp_url:
        raise PortalError(Code.LEVEL_UNAVAILABLE, f"level {outline.level} needs a time-stamping "
                          "service (portal.timestamp_url)", field="level")

    def keep(cur: Cursor, tx: Transaction) -> None:
        portal.store.keep_parameters(cur, tx, parameters)
        if also is not None:
            also(cur, tx)

    tx: Transaction = await asyncio.to_thread(
        portal.store.create_transaction, title=outline.title,
        requester_name=outline.requester_name, requester_email=outline.requester_email,
        documents=list(outline.documents), signers=signers,
        sequential=parameters.signing_order is not SigningOrder.PARALLEL,
        expires_in=dt.timedelta(days=outline.days), qualified=outline.qualified,
        messaging=outline.messaging, level=outline.level,
        workspace_id=outline.workspace_id, created_by=outline.created_by, turns=turns,
        then=keep)
    for signer in tx.signers:
        if signer.status is SignerStatus.INVITED:
            await portal.invite(tx, signer)
    return tx


async def take_documents(portal: Portal, body: dict[str, Any]) -> list[NewDocument]:
    """The body's `documents` checked (name, size, PDF, active content under its
    `activeContent` policy) and kept in the blob store."""
    taken = []
    policy = content_policy(body)
    for i, doc in enumerate(body["documents"]):
        name = document_name(doc["name"], f"documents[{i}].name")
        data = b64(doc["content"], f"documents[{i}].content",
                   portal.config.max_document_bytes)
        found = await asyncio.to_thread(inspect_document, data, i, policy)
        sha = await asyncio.to_thread(portal.blobs.put, data)
        await asyncio.to_thread(record, portal.store.db, sha, found.content)
        taken.append(NewDocument(name, sha, len(data), found.pages))
    return taken
