"""A requester's notification preferences and language (/settings) decide the mails
about their transactions: with an account whose preferences turn refusals off and whose
language is French, a signer's message reaches them in French and a refusal does not
reach them; a requester without an account gets both, in English."""

from __future__ import annotations

from portal.mail import compose
from tests.support.accounts import accounts
from tests.support.portal_service import RunningPortal, with_portal


async def _message_then_refusal(portal: RunningPortal) -> None:
    tx = await portal.create(signers=1, documents=1)
    invite = portal.invite_path(tx, 0)
    await portal.call("POST", f"/api/s/{invite}/messages", {"text": "Page 2?"}, expect=201)
    await portal.call("POST", f"/api/s/{invite}/refuse", {"reason": "Wrong address"})


def _subjects(portal: RunningPortal) -> list[str]:
    return [m.subject for m in portal.store.mails(to="agence@example.test")]


@with_portal()
async def test_preferences_and_language_of_the_requesters_account(
        portal: RunningPortal) -> None:
    await _message_then_refusal(portal)  # no account yet: every mail, in English
    assert sorted(_subjects(portal)) == sorted([
        compose("message", "en", name="x", title="Lease agreement", text="x")[0],
        compose("refused", "en", name="x", title="Lease agreement", reason="x")[0]])

    store = accounts(portal)
    user = store.create_user(email="Agence@example.test", name="Agence", lang="fr")
    store.update_profile(user.id, notifications={"refused": False})
    before = len(_subjects(portal))
    await _message_then_refusal(portal)
    assert _subjects(portal)[before:] == [
        compose("message", "fr", name="x", title="Lease agreement", text="x")[0]]
