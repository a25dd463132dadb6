"""A requester's account from invitation to daily use, over HTTP with a real SMTP sink:
the service administrator makes a workspace and invites its owner by e-mail; the link
creates the account, which must enrol TOTP before it is signed in; then sign-out,
sign-in with password and a TOTP code (a replayed code refused), CSRF (token and
cross-site check) on cookie-authenticated writes, API tokens shown once and revoked,
roles changed within what an admin may do, password reset by an e-mailed single-use
link, and bad input named by field. A session is kept in the store: a second portal
process on the same database knows it and can end it; it ends after two idle hours and
after twelve hours however busy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from yarl import URL

from portal.accounts.credentials import hash_password, new_totp_secret
from portal.routes.access import PLAIN_COOKIE, SESSION_IDLE
from portal.service import create_app
from portal.store import Store
from tests.support.accounts import Browser, accounts, new_transaction
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.smtp_sink import SmtpSink, smtp_sink

PASSWORD = "correct horse battery"
DEEP = "[" * 50_000 + "]" * 50_000


async def _invited(portal: RunningPortal, sink: SmtpSink, browser: Browser, email: str,
                   workspace: str, role: str, *, by: Browser | None = None,
                   mails_before: int = 0) -> str:
    """`email` invited to `workspace` with `role` (by the bootstrap token, or `by`),
    the account made from the mailed link, TOTP enrolled; returns the TOTP secret."""
    body = {"email": email, "role": role}
    if by is None:
        await portal.call("POST", f"/api/v1/workspaces/{workspace}/invitations", body,
                          auth=True, expect=201)
    else:
        await by.call("POST", f"/api/v1/workspaces/{workspace}/invitations", body,
                      expect=201)
    token = await sink.link(email, "/join/", mails_before + 1)
    seen = await browser.call("GET", f"/api/auth/invitations/{token}")
    assert (seen["email"], seen["role"], seen["hasAccount"]) == (email, role, False)
    joined = await browser.call("POST", f"/api/auth/invitations/{token}",
                                {"name": email.split("@")[0].title(), "password": PASSWORD})
    assert joined == {"workspace": workspace, "stage": "enrol"}
    # not signed in until the second factor is enrolled
    refused = await browser.call("GET", "/api/v1/workspaces", expect=401)
    assert refused["error"] == "UNAUTHORIZED"
    used = await browser.call("POST", f"/api/auth/invitations/{token}",
                              {"name": "Again", "password": PASSWORD}, expect=403)
    assert used["error"] == "LINK_INVALID"
    return await browser.enrol_totp()


def _cookie(browser: Browser) -> str:
    return next(c.value for c in browser.session.cookie_jar if c.key == PLAIN_COOKIE)


async def _journey(portal: RunningPortal, sink: SmtpSink) -> None:
    made = await portal.call("POST", "/api/v1/workspaces", {"name": "Agence Dupont"},
                             auth=True, expect=201)
    ws = made["id"]
    async with Browser(portal) as olga, Browser(portal) as rita:
        secret = await _invited(portal, sink, olga, "olga@example.test", ws, "owner")
        view = await olga.refresh()
        assert view["stage"] == "done"
        assert view["workspaces"] == [{"id": ws, "name": "Agence Dupont", "role": "owner",
                                       "suspended": False}]

        # CSRF: the synchronizer token, and the cross-site check, on cookie writes
        path = f"/api/v1/workspaces/{ws}/transactions"
        refused = await olga.call("POST", path, new_transaction("Lease"), csrf=False,
                                  expect=403)
        assert refused["error"] == "FORBIDDEN"
        refused = await olga.call("POST", path, new_transaction("Lease"), expect=403,
                                  headers={"Sec-Fetch-Site": "cross-site"})
        assert refused["error"] == "CROSS_SITE"
        tx = await olga.call("POST", path, new_transaction("Lease"), expect=201)

        # an admin invites a requester; cannot make owners
        await _invited(portal, sink, rita, "rita@example.test", ws, "requester", by=olga)
        await rita.refresh()
        listed = await rita.call("GET", path)
        assert [t["id"] for t in listed["transactions"]] == [tx["id"]]
        members = (await olga.call("GET", f"/api/v1/workspaces/{ws}"))["members"]
        rita_id = next(m["id"] for m in members if m["email"] == "rita@example.test")
        await olga.call("PATCH", f"/api/v1/workspaces/{ws}/members/{rita_id}",
                        {"role": "admin"})
        refused = await rita.call("POST", f"/api/v1/workspaces/{ws}/invitations",
                                  {"email": "x@example.test", "role": "owner"}, expect=403)
        assert refused["error"] == "FORBIDDEN"
        olga_id = view["user"]["id"]
        refused = await rita.call("DELETE", f"/api/v1/workspaces/{ws}/members/{olga_id}",
                                  expect=403)
        assert refused["error"] == "FORBIDDEN"
        last = await olga.call("PATCH", f"/api/v1/workspaces/{ws}/members/{olga_id}",
                               {"role": "viewer"}, expect=400)
        assert last["field"] == "role"  # a workspace keeps one owner

        # API tokens: shown once, listed without the secret, revoked
        made_token = await olga.call("POST", "/api/account/tokens",
                                     {"name": "CI", "workspace": ws, "expiresInDays": 30},
                                     expect=201)
        listed_tokens = (await olga.call("GET", "/api/account/tokens"))["tokens"]
        assert [t["name"] for t in listed_tokens] == ["CI"]
        assert "token" not in listed_tokens[0]
        bearer = {"Authorization": f"Bearer {made_token['token']}"}
        async with portal.session.get(portal.url + "/api/v1/transactions",
                                      headers=bearer) as response:
            assert response.status == 200
            assert [t["id"] for t in (await response.json())["transactions"]] == [tx["id"]]
        await olga.call("DELETE", f"/api/account/tokens/{made_token['id']}")
        async with portal.session.get(portal.url + "/api/v1/transactions",
                                      headers=bearer) as response:
            assert response.status == 401

        # sign out, then in again: password, then a TOTP code (used once)
        await olga.call("POST", "/api/auth/sign-out")
        assert (await olga.refresh())["stage"] == "none"
        await olga.call("GET", path, expect=401)
        wrong = await olga.call("POST", "/api/auth/password",
                                {"email": "olga@example.test", "password": "not it"},
                                expect=401)
        assert wrong["error"] == "UNAUTHORIZED"
        first = await olga.call("POST", "/api/auth/password",
                                {"email": "OLGA@example.test", "password": PASSWORD})
        assert first == {"stage": "totp"}
        await olga.call("GET", path, expect=401)
        await olga.refresh()
        half_done = _cookie(olga)
        replayed = await olga.call("POST", "/api/auth/totp", {"code": olga.code(secret)},
                                   expect=409)
        assert replayed["error"] == "OTP_REPLAYED"  # the enrolment used this step
        portal.clock.advance(seconds=30)
        await olga.call("POST", "/api/auth/totp", {"code": olga.code(secret)})
        await olga.refresh()
        await olga.call("GET", path)
        assert _cookie(olga) != half_done  # a new session id once signed in
        async with Browser(portal) as fixated:  # the half-done session's id opens nothing
            fixated.session.cookie_jar.update_cookies({PLAIN_COOKIE: half_done},
                                                      URL(portal.url))
            assert (await fixated.refresh())["stage"] == "none"

        # an invitation to a second workspace: accepted signed in as the invited account
        other = await portal.call("POST", "/api/v1/workspaces", {"name": "Second"},
                                  auth=True, expect=201)
        await portal.call("POST", f"/api/v1/workspaces/{other['id']}/invitations",
                          {"email": "olga@example.test", "role": "viewer"}, auth=True,
                          expect=201)
        token = await sink.link("olga@example.test", "/join/", 2)
        assert (await olga.call("GET", f"/api/auth/invitations/{token}"))["hasAccount"]
        async with Browser(portal) as stranger:
            refused = await stranger.call("POST", f"/api/auth/invitations/{token}",
                                          expect=401)
            assert refused["error"] == "UNAUTHORIZED"
        assert (await olga.call("POST", f"/api/auth/invitations/{token}"))["stage"] == "done"
        roles = {w["name"]: w["role"] for w in (await olga.refresh())["workspaces"]}
        assert roles == {"Agence Dupont": "owner", "Second": "viewer"}

        # a second factor is replaced only with a code of the current one (SECURITY #33)
        fresh = await olga.call("GET", "/api/account/totp/new")
        portal.clock.advance(seconds=30)
        refused = await olga.call("POST", "/api/account/totp",
                                  {"secret": fresh["secret"], "code": olga.code(fresh["secret"])},
                                  expect=401)
        assert (refused["error"], refused["field"]) == ("OTP_INVALID", "currentCode")
        await olga.call("POST", "/api/account/totp",
                        {"secret": fresh["secret"], "code": olga.code(fresh["secret"]),
                         "currentCode": olga.code(secret)})
        assert (await olga.call("GET", "/api/account"))["hasTotp"]
        # and the password changes only with the current one
        wrong = await olga.call("POST", "/api/account/password",
                                {"current": "not it", "password": "another long secret"},
                                expect=401)
        assert wrong["field"] == "current"
        await olga.call("POST", "/api/account/password",
                        {"current": PASSWORD, "password": "another long secret"})
        for method, where, body, field in [
                ("PATCH", "/api/account", {"lang": "de"}, "lang"),
                ("PATCH", "/api/account", {"notifications": {"sms": True}},
                 "notifications.sms"),
                ("POST", "/api/account/password", {"current": "x", "password": "short"},
                 "password"),
                ("POST", "/api/account/totp", {"secret": "abc", "code": "123456"}, "secret"),
                ("POST", "/api/account/tokens",
                 {"name": "CI", "workspace": ws, "expiresInDays": 0}, "expiresInDays"),
                ("POST", "/api/account/tokens", {"name": "CI", "expiresInDays": 3},
                 "workspace"),
                ("PATCH", f"/api/v1/workspaces/{ws}/members/{rita_id}", {"role": "god"},
                 "role"),
                ("POST", f"/api/v1/workspaces/{ws}/invitations",
                 {"email": "a@example.test"}, "role")]:
            answer = await olga.call(method, where, body, expect=400)
            assert (answer["error"], answer["field"]) == ("BAD_REQUEST", field), answer
            await _too_deep(olga.session, method, portal.url + where, {
                "X-CSRF-Token": olga.csrf, "Sec-Fetch-Site": "same-origin"})

        # password reset: an e-mailed link, single use; sessions end
        await rita.call("POST", "/api/auth/reset", {"email": "rita@example.test"},
                        expect=202)
        await olga.call("POST", "/api/auth/reset", {"email": "nobody@example.test"},
                        expect=202)  # the same answer for an unknown address
        token = await sink.link("rita@example.test", "/reset/")
        await rita.call("GET", f"/api/auth/reset/{token}")
        await rita.call("POST", f"/api/auth/reset/{token}",
                        {"password": "a brand new secret"})
        again = await rita.call("POST", f"/api/auth/reset/{token}",
                                {"password": "another new secret"}, expect=403)
        assert again["error"] == "LINK_INVALID"
        assert (await rita.refresh())["stage"] == "none"
        assert (await rita.call("POST", "/api/auth/password",
                                {"email": "rita@example.test",
                                 "password": "a brand new secret"}))["stage"] == "totp"


async def _too_deep(session: aiohttp.ClientSession, method: str, url: str,
                    headers: dict[str, str]) -> None:
    """A 50,000-deep JSON body is a typed 400, never a 500 (SECURITY #46)."""
    async with session.request(method, url, data=DEEP, headers={
            "Content-Type": "application/json", **headers}) as response:
        answer = await response.json()
    expected = (401, "UNAUTHORIZED") if url.endswith("/api/auth/totp") else \
        (400, "BAD_REQUEST")  # /api/auth/totp without a half-done session: refused first
    assert (response.status, answer["error"]) == expected, (url, answer)


async def _bad_input(portal: RunningPortal) -> None:
    made = await portal.call("POST", "/api/v1/workspaces", {"name": "W"}, auth=True,
                             expect=201)
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/api/auth/password", {"email": "not an address", "password": "x"},
         "email"),
        ("POST", "/api/auth/password", {"email": "a@example.test"}, "password"),
        ("POST", "/api/auth/totp", {"code": "12ab56"}, "code"),
        ("POST", "/api/auth/reset", {"email": 7}, "email"),
        ("POST", "/api/auth/reset/whatever", {"password": "short"}, "password"),
        ("POST", "/api/v1/workspaces", {"name": "  "}, "name"),
        ("POST", "/api/v1/workspaces", {"name": "W", "colour": "red"}, "colour"),
        ("POST", f"/api/v1/workspaces/{made['id']}/invitations",
         {"email": "a@example.test", "role": "boss"}, "role"),
    ]
    for method, path, body, field in cases:
        await _too_deep(portal.session, method, portal.url + path, portal.auth())
        answer = await portal.call(method, path, body, auth=True, expect=None)
        if path == "/api/auth/totp":
            assert answer["error"] == "UNAUTHORIZED"  # no session: refused before the body
            continue
        assert (answer["error"], answer.get("field")) == ("BAD_REQUEST", field), (path, answer)


def test_a_requester_account_from_invitation_to_daily_use(tmp_path: Path,
                                                          database_url: str) -> None:
    async def main() -> None:
        with smtp_sink() as sink:
            async with running_portal(tmp_path, database_url=database_url,
                                      smtp_host="127.0.0.1", smtp_port=sink.port) as portal:
                await _journey(portal, sink)
                await _bad_input(portal)
    asyncio.run(main())


async def _shared_and_expiring(portal: RunningPortal) -> None:
    store = accounts(portal)
    user = store.create_user(email="sam@example.test", name="Sam", lang="en",
                             password_hash=hash_password(PASSWORD))
    secret = new_totp_secret()
    store.set_totp(user.id, secret, 0)
    other = create_app(portal.config, store=Store.open(portal.config.database_url,
                                                       portal.config.state_dir, portal.clock))
    second = TestServer(other, host="127.0.0.1")
    await second.start_server()
    try:
        async with Browser(portal) as sam:
            async def sign_in() -> None:
                await sam.call("POST", "/api/auth/password",
                               {"email": "sam@example.test", "password": PASSWORD})
                await sam.refresh()
                portal.clock.advance(seconds=30)  # a fresh step for each sign-in
                await sam.call("POST", "/api/auth/totp", {"code": sam.code(secret)})
                await sam.refresh()

            async def stage_at(url: str) -> str:
                async with sam.session.get(url + "/api/auth/session") as response:
                    return str((await response.json())["stage"])

            # signed in through one process, known to the other; signed out there
            await sign_in()
            other_url = str(second.make_url("")).rstrip("/")
            assert await stage_at(other_url) == "done"
            async with sam.session.post(other_url + "/api/auth/sign-out", headers={
                    "X-CSRF-Token": sam.csrf, "Sec-Fetch-Site": "same-origin"}) as response:
                assert response.status == 200
            assert await stage_at(portal.url) == "none"

            # two idle hours end a session
            await sign_in()
            portal.clock.advance(hours=1, minutes=59)
            assert await stage_at(portal.url) == "done"
            portal.clock.advance(hours=2)
            assert await stage_at(portal.url) == "none"

            # twelve hours end it, however busy
            await sign_in()
            for _ in range(7):
                portal.clock.advance(hours=1, minutes=30)
                assert await stage_at(portal.url) == "done"
            portal.clock.advance(hours=1, minutes=30)
            assert await stage_at(portal.url) == "none"

            # the sweeper's purge deletes sessions nobody came back to
            await sign_in()
            portal.clock.advance(hours=2)
            assert store.purge_expired(SESSION_IDLE) >= 1
            with portal.store.db.transaction() as cur:
                cur.execute("SELECT COUNT(*) FROM account_sessions WHERE user_id = ?",
                            (user.id,))
                assert cur.fetchone()[0] == 0
    finally:
        await second.close()


def test_sessions_are_shared_by_portal_processes_and_expire(tmp_path: Path,
                                                            database_url: str) -> None:
    async def main() -> None:
        async with running_portal(tmp_path, database_url=database_url) as portal:
            await _shared_and_expiring(portal)
    asyncio.run(main())


def test_the_session_cookie_over_https_and_over_http(tmp_path: Path) -> None:
    """`__Host-` prefixed, Secure, HttpOnly, SameSite=Lax, Path=/ when the portal is
    reached over https (RFC 6265bis §4.1.3.2); the bare name without Secure over http."""
    async def cookie(public_url: str | None) -> str:
        settings = {"public_url": public_url} if public_url else {}
        async with running_portal(tmp_path / (public_url or "http").split(":")[0],
                                  **settings) as portal:
            store = accounts(portal)
            store.create_user(email="sam@example.test", name="Sam", lang="en",
                              password_hash=hash_password(PASSWORD))
            async with portal.session.post(portal.url + "/api/auth/password", json={
                    "email": "sam@example.test", "password": PASSWORD}) as response:
                assert response.status == 200
                return response.headers["Set-Cookie"]

    async def main() -> None:
        secure = await cookie("https://portal.example.test")
        assert secure.startswith("__Host-qsign-session=")
        assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= {
            part.strip() for part in secure.split(";")}
        assert "Domain" not in secure
        plain = await cookie(None)
        assert plain.startswith("qsign-session=")
        assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= {
            part.strip() for part in plain.split(";")}
        assert "Secure" not in plain
    asyncio.run(main())
