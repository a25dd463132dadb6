"""Requester-side gaps closed (issue 15), over the real portal on a loopback socket:
the testers' outbox is the service administrator's (a member gets FORBIDDEN, not
UNAUTHORIZED); the bootstrap token names the workspace a transaction goes to (an
unknown one NOT_FOUND); sign-in failures are counted per client as well as per address
(password spraying from one client is throttled)."""

from __future__ import annotations

from portal.accounts import Role
from tests.support.accounts import Browser, accounts, api_token, new_transaction, requester_in
from tests.support.portal_service import RunningPortal, with_portal


@with_portal()
async def test_the_outbox_is_the_service_administrators(portal: RunningPortal) -> None:
    owner = requester_in(portal, "owner@example.test", Role.OWNER)
    async with portal.session.get(portal.url + "/api/v1/outbox",
                                  headers=owner.auth()) as response:
        assert response.status == 403, await response.text()
        assert (await response.json())["error"] == "FORBIDDEN"
    async with portal.session.get(portal.url + "/api/v1/outbox") as response:
        assert response.status == 401
    await portal.call("GET", "/api/v1/outbox", auth=True)
    accounts(portal).set_service_admin("owner@example.test", True)
    admin = api_token(portal, owner.user.id, owner.workspace)
    async with portal.session.get(portal.url + "/api/v1/outbox",
                                  headers={"Authorization": f"Bearer {admin}"}) as response:
        assert response.status == 200, await response.text()
        assert set(await response.json()) == {"sms", "mail"}


@with_portal()
async def test_the_bootstrap_token_names_the_workspace(portal: RunningPortal) -> None:
    b = requester_in(portal, "bea@example.test", Role.OWNER)
    a = requester_in(portal, "ann@example.test", Role.OWNER)
    made = await portal.call("POST", "/api/v1/transactions",
                             {**new_transaction("For B"), "workspace": b.workspace},
                             auth=True, expect=201)
    async with portal.session.get(portal.url + "/api/v1/transactions",
                                  headers=b.auth()) as response:
        listed = await response.json()
    assert [t["id"] for t in listed["transactions"]] == [made["id"]]
    unknown = await portal.call("POST", "/api/v1/transactions",
                                {**new_transaction("Lost"), "workspace": "no-such"},
                                auth=True, expect=404)
    assert unknown["error"] == "NOT_FOUND"
    async with portal.session.post(portal.url + "/api/v1/transactions",
                                   json={**new_transaction("Into B"),
                                         "workspace": b.workspace},
                                   headers=a.auth()) as response:
        assert response.status == 404
    wrong = await portal.call("POST", "/api/v1/transactions",
                              {**new_transaction("Bad"), "workspace": 7},
                              auth=True, expect=400)
    assert wrong["field"] == "workspace"
    assert len(portal.store.transactions()) == 1


@with_portal()
async def test_sign_in_failures_from_one_client_are_throttled(
        portal: RunningPortal) -> None:
    async with Browser(portal) as browser:
        answers = []
        for i in range(30):  # a new address each time: the per-address count stays at 1
            body = {"email": f"guess{i}@example.test", "password": "wrong"}
            answers.append((await browser.call("POST", "/api/auth/password", body,
                                               expect=None))["error"])
        assert answers[:20] == ["UNAUTHORIZED"] * 20
        assert "OTP_THROTTLED" in answers[20:], answers


@with_portal(default_lang="fr")
async def test_a_french_invitation_words_the_role_in_french(portal: RunningPortal) -> None:
    owner = requester_in(portal, "owner@example.test", Role.OWNER)
    await portal.call("POST", f"/api/v1/workspaces/{owner.workspace}/invitations",
                      {"email": "vic@example.test", "role": "viewer"}, auth=True,
                      expect=201)
    async with portal.session.post(
            f"{portal.url}/api/v1/workspaces/{owner.workspace}/invitations",
            json={"email": "rae@example.test", "role": "requester"},
            headers=owner.auth()) as response:
        assert response.status == 201, await response.text()
    viewer, = portal.store.mails(to="vic@example.test")
    assert "L'administrateur du service vous invite" in viewer.body, viewer.body
    assert "comme lecteur." in viewer.body, viewer.body
    requester, = portal.store.mails(to="rae@example.test")
    assert "comme demandeur." in requester.body, requester.body
