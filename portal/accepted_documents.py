"""Accepted identity documents per workspace (issue 15): the document kinds, per issuing
state, that a workspace's first-time signers may present at the identity step, within
what the identity service supports (its policy: portal.toml's [identity] `accepted`, or
the reference service's default list, portal/identity/model.py).

A workspace without a list of its own accepts what the service supports. The list is
shown to the signer before capture and enforced by the enrolment's identity steps: a
kind no state allows is refused when the session opens, a verified document whose
(state, kind) is outside the list when the identity step ends (DOCUMENT_NOT_ACCEPTED,
naming both). Stored in `workspace_identity_documents` (portal-0006).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ground.sql import Database
from portal.errors import Code, PortalError
from portal.identity import countries
from portal.identity.model import DocumentKind, IdentityPolicy

Accepted = Mapping[str, frozenset[DocumentKind]]  # MRZ state code -> kinds


def supported(policy: IdentityPolicy | None) -> Accepted:
    """What the identity service accepts: the configured policy, else its default."""
    return (policy or IdentityPolicy()).accepted


def as_json(accepted: Accepted) -> dict[str, list[str]]:
    """{state: [kinds]}, states and kinds sorted, states without a kind left out."""
    return {state: sorted(k.value for k in kinds)
            for state, kinds in sorted(accepted.items()) if kinds}


def describe(state: str, kind: DocumentKind) -> str:
    """'a passport issued by France (FRA)': how a refusal names a document."""
    found = countries.lookup(state)
    name = found.name if found else state
    return f"{'an identity card' if kind is DocumentKind.ID_CARD else 'a passport'} " \
           f"issued by {name} ({state})"


def parse(body: Mapping[str, Any], within: Accepted) -> dict[str, frozenset[DocumentKind]]:
    """A workspace's list from the API's {state: [kinds]} (ISO alpha-3 or MRZ codes),
    each (state, kind) supported by the service; BAD_REQUEST naming the field."""
    if not body:
        raise PortalError(Code.BAD_REQUEST, "accepted: name at least one state and kind",
                          field="accepted")
    chosen: dict[str, frozenset[DocumentKind]] = {}
    for raw_state, raw_kinds in body.items():
        field = f"accepted.{raw_state}"
        state = countries.lookup(raw_state)
        if state is None or state.mrz_code not in within:
            raise PortalError(Code.BAD_REQUEST, f"{field}: the identity service does not "
                              "support this state", field=field)
        kinds: set[DocumentKind] = set()
        for raw in raw_kinds:
            try:
                kind = DocumentKind(raw)
            except ValueError:
                raise PortalError(Code.BAD_REQUEST, f"{field}: kinds are "
                                  f"{[k.value for k in DocumentKind]}", field=field) from None
            if kind not in within[state.mrz_code]:
                raise PortalError(Code.BAD_REQUEST, f"{field}: the identity service does "
                                  f"not accept {describe(state.mrz_code, kind)}",
                                  field=field)
            kinds.add(kind)
        if not kinds:
            raise PortalError(Code.BAD_REQUEST, f"{field}: name at least one kind, or "
                              "leave the state out", field=field)
        chosen[state.mrz_code] = frozenset(kinds)
    return chosen


def of_workspace(db: Database, workspace_id: str) -> dict[str, frozenset[DocumentKind]] | None:
    """The workspace's own list; None when it has none (the service's list applies)."""
    with db.transaction() as cur:
        cur.execute("SELECT issuing_state, kind FROM workspace_identity_documents "
                    "WHERE workspace_id = ?", (workspace_id,))
        rows = cur.fetchall()
    if not rows:
        return None
    found: dict[str, set[DocumentKind]] = {}
    for state, kind in rows:
        found.setdefault(state, set()).add(DocumentKind(kind))
    return {state: frozenset(kinds) for state, kinds in found.items()}


def replace(db: Database, workspace_id: str,
            accepted: Mapping[str, frozenset[DocumentKind]] | None) -> None:
    """Set the workspace's list (None: back to the service's list), in one transaction."""
    with db.transaction() as cur:
        cur.execute("DELETE FROM workspace_identity_documents WHERE workspace_id = ?",
                    (workspace_id,))
        cur.executemany("INSERT INTO workspace_identity_documents (workspace_id, "
                        "issuing_state, kind) VALUES (?, ?, ?)",
                        [(workspace_id, state, kind.value)
                         for state, kinds in (accepted or {}).items() for kind in kinds])


def for_signer(db: Database, signer_id: str) -> Accepted | None:
    """The list of this signer's transaction's workspace; None when it has none."""
    with db.transaction() as cur:
        cur.execute("SELECT t.workspace_id FROM signers s JOIN transactions t "
                    "ON t.id = s.transaction_id WHERE s.id = ?", (signer_id,))
        row = cur.fetchone()
    return of_workspace(db, row[0]) if row is not None and row[0] else None


def check_kind(accepted: Accepted, kind: DocumentKind) -> None:
    """DOCUMENT_NOT_ACCEPTED when no state's list holds `kind` (before any capture)."""
    if not any(kind in kinds for kinds in accepted.values()):
        what = "identity cards" if kind is DocumentKind.ID_CARD else "passports"
        raise PortalError(Code.DOCUMENT_NOT_ACCEPTED, f"{what} are not accepted for this "
                          "transaction", document=kind.value)


def check(accepted: Accepted, state: str, kind: DocumentKind) -> None:
    """DOCUMENT_NOT_ACCEPTED naming the document when (state, kind) is not in the list."""
    if kind not in accepted.get(state, frozenset()):
        raise PortalError(Code.DOCUMENT_NOT_ACCEPTED, f"{describe(state, kind)} is not "
                          "accepted for this transaction", document=kind.value,
                          issuingState=state)
