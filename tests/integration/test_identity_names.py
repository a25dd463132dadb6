"""Names as people have them through the portal's enrolment (issue 17): a signer whose
name has a digit, an apostrophe or Cyrillic letters reaches `identity-done` and gets a
typed comparison, never a 500. One portal, one identity verification per name."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from portal.identity.mrz import DocumentFormat
from tests.support.identity_fixtures import make_specimen, selfie
from tests.support.portal_service import RunningPortal, running_portal


async def _verified(portal: RunningPortal, invite: str, surname: str, given: str) -> Any:
    """The enrolment of `invite` taken to identity-done with a specimen of `given
    surname` (OCR of the real images) and the liveness challenges answered in time by the
    specimen's person."""
    async def step(name: str, body: dict[str, Any] | None = None, expect: int = 200) -> Any:
        return await portal.call("POST", f"/api/s/{invite}/enrolment/{name}", body or {},
                                 expect=expect)

    await portal.consent(invite)
    await step("start")
    view = await step("personal-data", {"correct": True})
    consents = [{k: c[k] for k in ("kind", "version", "sha256")}
                for c in view["enrolment"]["consents"]]
    await step("consents", {"accepted": consents})
    session = (await step("identity", {"document": "passport"}))["identitySession"]
    card = make_specimen(DocumentFormat.TD3, surname=surname, given_names=given, seed=7)
    base = f"/api/identity/sessions/{session}"
    for side, image in card.images.items():
        async with portal.session.put(f"{portal.url}{base}/sides/{side.value}", data=image,
                                      headers={"Content-Type": "image/png"}) as response:
            assert response.status == 200, await response.json()
    while (await portal.call("GET", base))["step"] == "liveness":
        challenge = await portal.call("POST", f"{base}/challenges/next")
        portal.clock.advance(seconds=2)
        await portal.call("POST", f"{base}/challenges/{challenge['id']}", {
            "nonce": challenge["nonce"],
            "frames": [base64.b64encode(f).decode() for f in selfie(challenge["action"])]})
    return await step("identity-done", expect=200)


@pytest.mark.parametrize(("invited", "surname", "given", "matches", "differences"), [
    # A digit is on no document: a typed mismatch the signer can have corrected.
    ("Marie Curie2", "Curie", "Marie", False, ["surname"]),
    ("Siobhán O'Neill-Dubois", "O'Neill-Dubois", "Siobhán Marie", True, []),
    ("Мария Иванова", "Ivanova", "Mariia", True, []),
])
def test_identity_done_answers_every_name(tmp_path: Path, invited: str, surname: str,
                                          given: str, matches: bool,
                                          differences: list[str]) -> None:
    async def main() -> None:
        async with running_portal(tmp_path, identity_accept_specimens=True) as portal:
            tx = await portal.create(signers=[{"name": invited, "email": "s1@example.test",
                                               "phone": "+33612345670", "lang": "en"}],
                                     documents=1)
            view = await _verified(portal, portal.invite_path(tx, 0), surname, given)
            assert view["enrolment"]["comparison"] == {"matches": matches,
                                                       "differences": differences}
            if not matches:
                refused = await portal.call("POST", f"/api/s/{portal.invite_path(tx, 0)}"
                                            "/enrolment/identity-confirm",
                                            {"correct": True}, expect=409)
                assert refused["error"] == "IDENTITY_MISMATCH"
    asyncio.run(main())
