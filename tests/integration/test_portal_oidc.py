"""OpenID Connect sign-in against a real provider on loopback (IdentityPython's OP,
tests/support/oidc_provider.py): an HTTP client follows the redirects from the portal to
the provider and back, and the invited account is signed in; an address the portal does
not know is not; a callback opened in another browser, or twice, signs nobody in; an
invitation is accepted with the provider's identity when its verified address is the
invited one. ID
tokens made with the provider's own key but the wrong audience, nonce, issuer or expiry,
or signed by another key, are each refused by the portal's checks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from yarl import URL

from portal.accounts.oidc import OidcError, client_for
from portal.routes.access import digest
from portal.routes.oidc_signin import CALLBACK, STATE_COOKIE
from tests.support.accounts import accounts
from tests.support.oidc_provider import RunningProvider, oidc_provider
from tests.support.portal_service import RunningPortal, running_portal
from tests.support.ports import free_port
from tests.support.smtp_sink import SmtpSink, smtp_sink

OLGA = {"sub": "olga-at-idp", "email": "olga@example.test", "email_verified": True,
        "name": "Olga Kowalska"}


async def _sign_in(portal: RunningPortal, jar: aiohttp.CookieJar, join: str = "") -> str:
    """Follow the redirects from the portal to the provider and back as a browser does;
    returns the page the portal sends the browser to at the end."""
    url = portal.url + "/api/auth/oidc/start" + (f"?join={join}" if join else "")
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        while url.startswith("http"):
            async with browser.get(url, allow_redirects=False) as response:
                assert response.status == 302, (url, await response.text())
                url = response.headers["Location"]
    return url


async def _stage(portal: RunningPortal, jar: aiohttp.CookieJar) -> Any:
    async with aiohttp.ClientSession(cookie_jar=jar) as browser, \
            browser.get(portal.url + "/api/auth/session") as response:
        return await response.json()


async def _redirected(jar: aiohttp.CookieJar, url: str) -> str:
    """Where `url` sends a browser with `jar` (its Location)."""
    async with aiohttp.ClientSession(cookie_jar=jar) as browser, \
            browser.get(url, allow_redirects=False) as response:
        return response.headers["Location"]


async def _flow(portal: RunningPortal, provider: RunningProvider) -> None:
    store = accounts(portal)
    olga = store.create_user(email="olga@example.test", name="Olga", lang="en")

    jar = aiohttp.CookieJar(unsafe=True)
    assert await _sign_in(portal, jar) == "/requester"
    view = await _stage(portal, jar)
    assert (view["stage"], view["user"]["email"]) == ("done", "olga@example.test")
    linked = store.user(olga.id).oidc_subject  # the provider's subject for Olga
    assert linked is not None and linked.startswith(f"{provider.issuer} ")

    # the provider's user changes address: the link by subject still finds Olga
    provider.set_user({**OLGA, "email": "o.k@example.test"})
    jar = aiohttp.CookieJar(unsafe=True)
    assert await _sign_in(portal, jar) == "/requester"
    assert (await _stage(portal, jar))["user"]["id"] == olga.id

    # someone the portal does not know: no account is made
    provider.set_user({"sub": "mallory", "email": "mallory@example.test",
                       "email_verified": True, "name": "Mallory"})
    jar = aiohttp.CookieJar(unsafe=True)
    assert await _sign_in(portal, jar) == "/signin?error=FORBIDDEN"
    assert (await _stage(portal, jar))["stage"] == "none"
    assert store.user_by_email("mallory@example.test") is None

    # an unverified address is not taken as proof
    store.create_user(email="uma@example.test", name="Uma", lang="en")
    provider.set_user({"sub": "uma", "email": "uma@example.test", "email_verified": False})
    assert await _sign_in(portal, aiohttp.CookieJar(unsafe=True)) == \
        "/signin?error=FORBIDDEN"

    # the callback URL carried to another browser, then replayed: nobody signed in
    provider.set_user(OLGA)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(portal.url + "/api/auth/oidc/start",
                               allow_redirects=False) as started:
            at_provider = started.headers["Location"]
        async with browser.get(at_provider, allow_redirects=False) as answered:
            callback = answered.headers["Location"]
    assert callback.startswith(portal.url + CALLBACK)
    assert await _redirected(aiohttp.CookieJar(unsafe=True), callback) == \
        "/signin?error=LINK_INVALID"  # another browser: not its sign-in
    assert await _redirected(jar, callback) == "/requester"
    assert await _redirected(jar, callback) == "/signin?error=LINK_INVALID"  # cookie gone
    replayer = aiohttp.CookieJar(unsafe=True)  # even with the state cookie: used once
    replayer.update_cookies({STATE_COOKIE: URL(callback).query["state"]},
                            URL(portal.url + CALLBACK))
    assert await _redirected(replayer, callback) == "/signin?error=LINK_EXPIRED"


async def _joined(portal: RunningPortal, provider: RunningProvider, sink: SmtpSink) -> None:
    """An invitation accepted with the provider's identity: the account is made without a
    password; an identity whose verified address is not the invited one joins nothing."""
    made = await portal.call("POST", "/api/v1/workspaces", {"name": "Agence"}, auth=True,
                             expect=201)
    for email in ("nina@example.test", "other@example.test"):
        await portal.call("POST", f"/api/v1/workspaces/{made['id']}/invitations",
                          {"email": email, "role": "requester"}, auth=True, expect=201)
    provider.set_user({"sub": "nina", "email": "nina@example.test", "email_verified": True,
                       "name": "Nina Simone"})
    wrong = await sink.link("other@example.test", "/join/")
    assert await _sign_in(portal, aiohttp.CookieJar(unsafe=True), wrong) == \
        "/signin?error=FORBIDDEN"
    assert accounts(portal).invitation(digest(wrong)).email == "other@example.test"  # unused

    jar = aiohttp.CookieJar(unsafe=True)
    assert await _sign_in(portal, jar, await sink.link("nina@example.test", "/join/")) == \
        "/requester"
    view = await _stage(portal, jar)
    assert (view["stage"], view["user"]["name"]) == ("done", "Nina Simone")
    assert view["workspaces"] == [{"id": made["id"], "name": "Agence", "role": "requester",
                                   "suspended": False}]
    nina = accounts(portal).user_by_email("nina@example.test")
    assert nina is not None and not nina.has_password and not nina.has_totp


async def _forged_id_tokens(provider: RunningProvider, redirect: str) -> None:
    client = client_for(provider.issuer, provider.client_id, provider.client_secret,
                        redirect)
    [theirs] = provider.server.keyjar.get_signing_key("RSA", issuer_id="")
    pem = theirs.priv_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    rsa = RSAKey.import_key(pem, {"kid": theirs.kid})  # the provider's own signing key
    now = int(time.time())
    good = {"iss": provider.issuer, "aud": [provider.client_id], "sub": "olga-at-idp",
            "nonce": "n-1", "iat": now, "exp": now + 300}

    def signed(claims: dict[str, Any], key: Any = rsa, alg: str = "RS256") -> str:
        return jwt.encode({"alg": alg, "kid": key.kid}, claims, key)

    assert (await client._checked(signed(good), "n-1"))["sub"] == "olga-at-idp"
    stranger = ECKey.generate_key("P-256", parameters={"kid": rsa.kid})
    refused = {
        "another key": (signed(good, stranger, "ES256"), "signature"),
        "another audience": (signed({**good, "aud": ["someone-else"]}), "not for this"),
        "another issuer": (signed({**good, "iss": "http://127.0.0.1:1"}), "another issuer"),
        "expired": (signed({**good, "exp": now - 3600}), "expired"),
        "another nonce": (signed({**good, "nonce": "n-2"}), "nonce"),
        "several audiences, no azp": (signed({**good, "aud": [provider.client_id, "x"]}),
                                      "azp"),
    }
    for case, (token, reason) in refused.items():
        with pytest.raises(OidcError, match=reason):
            await client._checked(token, "n-1")
        del case


def test_oidc_sign_in_through_a_real_provider(tmp_path: Path, database_url: str) -> None:
    async def main() -> None:
        port = free_port()
        redirect = f"http://127.0.0.1:{port}{CALLBACK}"
        async with oidc_provider(tmp_path / "op", redirect, OLGA) as provider:
            with smtp_sink() as sink:
                async with running_portal(
                        tmp_path, database_url=database_url, port=port,
                        oidc_issuer=provider.issuer, oidc_client_id=provider.client_id,
                        oidc_client_secret=provider.client_secret, oidc_name="Example IdP",
                        smtp_host="127.0.0.1", smtp_port=sink.port) as portal:
                    await _flow(portal, provider)
                    await _joined(portal, provider, sink)
            await _forged_id_tokens(provider, redirect)
    asyncio.run(main())
