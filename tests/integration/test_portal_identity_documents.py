"""Accepted identity documents per workspace (issue 15): the signer sees the workspace's
list before capture, a kind it does not hold is refused when the identity session
opens, and a verified document from a state outside it is refused at identity-done,
naming the document (the reference service, its OCR and liveness, run for real)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from portal import accepted_documents
from portal.identity.model import DocumentKind
from portal.identity.mrz import DocumentFormat
from tests.support.identity_fixtures import make_specimen, selfie
from tests.support.portal_service import running_portal


def test_the_workspace_list_is_shown_then_enforced(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_portal(tmp_path, identity_accept_specimens=True) as portal:
            tx = await portal.create(signers=1, documents=1)
            invite = portal.invite_path(tx, 0)
            with portal.store.db.transaction() as cur:
                cur.execute("SELECT workspace_id FROM transactions WHERE id = ?", (tx["id"],))
                workspace = cur.fetchone()[0]
            shown = await portal.call("GET", f"/api/s/{invite}/identity-documents")
            assert not shown["restricted"] and len(shown["accepted"]) > 30
            accepted_documents.replace(portal.store.db, workspace,
                                       {"FRA": frozenset({DocumentKind.PASSPORT})})
            shown = await portal.call("GET", f"/api/s/{invite}/identity-documents")
            assert shown == {"restricted": True, "accepted": [
                {"state": "FRA", "alpha2": "FR", "name": "France", "documents": ["passport"]}]}

            async def step(name: str, body: dict[str, Any] | None = None,
                           expect: int = 200) -> Any:
                return await portal.call("POST", f"/api/s/{invite}/enrolment/{name}",
                                         body or {}, expect=expect)

            await portal.consent(invite)
            await step("start")
            view = await step("personal-data", {"correct": True})
            await step("consents", {"accepted": [
                {k: c[k] for k in ("kind", "version", "sha256")}
                for c in view["enrolment"]["consents"]]})
            refused = await step("identity", {"document": "id-card"}, expect=422)
            assert (refused["error"], refused["document"]) == ("DOCUMENT_NOT_ACCEPTED",
                                                               "id-card")

            session = (await step("identity", {"document": "passport"}))["identitySession"]
            card = make_specimen(DocumentFormat.TD3, country="ITA", surname="Martin",
                                 given_names="Alice", seed=3)
            base = f"{portal.url}/api/identity/sessions/{session}"
            for side, image in card.images.items():
                async with portal.session.put(f"{base}/sides/{side.value}", data=image,
                                              headers={"Content-Type": "image/png"}) as r:
                    assert r.status == 200, await r.json()
            identity = portal.state.enrolment.identity
            while identity.session(session).step.value == "liveness":
                challenge = identity.next_challenge(session)
                portal.clock.advance(seconds=2)
                identity.answer_challenge(session, challenge.id, challenge.nonce,
                                          selfie(challenge.action))
            refused = await step("identity-done", expect=422)
            assert (refused["error"], refused["document"], refused["issuingState"]) == (
                "DOCUMENT_NOT_ACCEPTED", "passport", "ITA")
            assert "a passport issued by Italy (ITA)" in refused["message"]
    asyncio.run(main())
