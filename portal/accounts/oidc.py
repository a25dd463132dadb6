"""The portal as an OpenID Connect relying party (OpenID Connect Core 1.0): the
authorization code flow with PKCE (RFC 7636, S256), `state` and `nonce`; the provider
found by discovery (OpenID Connect Discovery 1.0 §4, its `issuer` checked to be the one
configured); the ID token's signature checked against the provider's JWKS (joserfc,
asymmetric algorithms only), then its `iss`, `aud`/`azp`, `exp`, `iat` and `nonce`
(Core §3.1.3.7). Claims missing from the ID token are read from the UserInfo endpoint,
whose `sub` must be the ID token's (Core §5.3.4)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlencode

import aiohttp
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")  # never "none" nor HMAC (a client secret is no key)
LEEWAY = 60  # seconds of clock skew accepted on exp and iat
METADATA_TTL = 3600.0
_TIMEOUT = aiohttp.ClientTimeout(total=15)


class OidcError(Exception):
    """The provider or its answer cannot be trusted; the message says why."""


@dataclass(frozen=True)
class OidcIdentity:
    subject: str  # "<iss> <sub>": a subject is unique per issuer only (Core §2)
    email: str | None
    email_verified: bool
    name: str


@dataclass(frozen=True)
class Authorization:
    """What the portal keeps between sending the browser away and its return."""

    url: str
    state: str
    nonce: str
    verifier: str


def _s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(verifier)), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class OidcClient:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    _metadata: dict[str, Any] | None = field(default=None, repr=False)
    _fetched_at: float = 0.0
    _keys: KeySet | None = field(default=None, repr=False)

    async def _get(self, session: aiohttp.ClientSession, url: str,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            if response.status != 200:
                raise OidcError(f"{url}: HTTP {response.status}")
            data = await _json(response)
        if not isinstance(data, dict):
            raise OidcError(f"{url}: not a JSON object")
        return data

    async def metadata(self) -> dict[str, Any]:
        """The provider's configuration (Discovery §4), cached for an hour."""
        if self._metadata is None or time.monotonic() - self._fetched_at > METADATA_TTL:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
                found = await self._get(session, url)
            if found.get("issuer") != self.issuer:  # Discovery §4.3
                raise OidcError("the provider's configuration names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(key), str):
                    raise OidcError(f"the provider's configuration has no {key}")
            self._metadata, self._fetched_at, self._keys = found, time.monotonic(), None
        return self._metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            meta = await self.metadata()
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
                jwks = await self._get(session, meta["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise OidcError(f"the provider's JWKS cannot be read: {exc}") from exc
        return self._keys

    async def authorization(self) -> Authorization:
        """Where to send the browser (Core §3.1.2.1), with fresh state, nonce and PKCE
        verifier."""
        meta = await self.metadata()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)  # 64 characters: RFC 7636 §4.1 allows 43-128
        query = urlencode({"response_type": "code", "client_id": self.client_id,
                           "redirect_uri": self.redirect_uri,
                           "scope": "openid email profile", "state": state, "nonce": nonce,
                           "code_challenge": _s256(verifier),
                           "code_challenge_method": "S256"})
        endpoint = meta["authorization_endpoint"]
        return Authorization(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}",
                             state, nonce, verifier)

    async def identity(self, code: str, verifier: str, nonce: str) -> OidcIdentity:
        """Redeem `code` at the token endpoint (client_secret_basic, RFC 6749 §2.3.1),
        check the ID token, and return who signed in."""
        meta = await self.metadata()
        basic = {"Authorization": aiohttp.encode_basic_auth(_form(self.client_id),
                                                            _form(self.client_secret))}
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": verifier}
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            async with session.post(meta["token_endpoint"], data=form, headers=basic,
                                    allow_redirects=False) as response:
                answer = await _json(response)
                if response.status != 200 or not isinstance(answer, dict):
                    error = answer.get("error") if isinstance(answer, dict) else None
                    raise OidcError(f"the token endpoint refused the code: {error}")
            if not isinstance(answer.get("id_token"), str):
                raise OidcError("the token answer has no id_token")
            claims = await self._checked(answer["id_token"], nonce)
            if "email" not in claims and isinstance(meta.get("userinfo_endpoint"), str) \
                    and isinstance(answer.get("access_token"), str):
                info = await self._get(session, meta["userinfo_endpoint"], {
                    "Authorization": f"Bearer {answer['access_token']}"})
                if info.get("sub") != claims["sub"]:  # Core §5.3.4
                    raise OidcError("the UserInfo answer is about another subject")
                claims = {**info, **claims}
        email = claims.get("email")
        return OidcIdentity(f"{self.issuer} {claims['sub']}",
                            email.lower() if isinstance(email, str) else None,
                            claims.get("email_verified") is True,
                            str(claims.get("name") or email or claims["sub"]))

    async def _checked(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature and Core §3.1.3.7's rules hold."""
        keys = await self._key_set()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
            except (JoseError, ValueError) as exc:  # a key rotated since: fetch once more
                if "key" not in str(exc).lower():
                    raise
                token = jwt.decode(id_token, await self._key_set(refresh=True),
                                   algorithms=list(ALGORITHMS))
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token's signature does not verify: {exc}") from exc
        claims = dict(token.claims)
        now = time.time()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != self.issuer:
            raise OidcError("the ID token is from another issuer")
        if self.client_id not in audiences:
            raise OidcError("the ID token is not for this portal")
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token's azp is not this portal")
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] + LEEWAY < now:
            raise OidcError("the ID token has expired")
        if not isinstance(claims.get("iat"), int | float) or claims["iat"] - LEEWAY > now:
            raise OidcError("the ID token was issued in the future")
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
                claims["nonce"], nonce):
            raise OidcError("the ID token's nonce is not this sign-in's")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise OidcError("the ID token has no subject")
        return claims


async def _json(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError as exc:
        raise OidcError(f"{response.url}: not JSON (HTTP {response.status})") from exc


def _form(value: str) -> str:
    """RFC 6749 §2.3.1: client id and secret are form-urlencoded inside Basic."""
    return urlencode({"": value})[1:]


@cache
def client_for(issuer: str, client_id: str, client_secret: str,
               redirect_uri: str) -> OidcClient:
    """One client per configuration in this process (its discovery and keys cached)."""
    return OidcClient(issuer, client_id, client_secret, redirect_uri)
