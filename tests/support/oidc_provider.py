"""A real OpenID Connect provider on loopback for tests: IdentityPython's OP (idpyoidc)
served by a small aiohttp app. It publishes its discovery document and JWKS, runs the
authorization code flow with PKCE, and signs ID tokens with its own RSA and EC keys
made at start. The person at the authorization endpoint is `user` (idpyoidc's NoAuthn:
the test plays someone already signed in at the provider); their claims come from the
UserInfo endpoint. One client is registered: `client_id` / `client_secret` with the
portal's callback as its redirect URI."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from idpyoidc.server import Server
from idpyoidc.server.configure import OP_DEFAULT_CONFIG, OPConfiguration
from idpyoidc.server.exception import UnAuthorizedClient

from tests.support.ports import free_port

PASSWORD_ACR = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


@dataclass
class RunningProvider:
    issuer: str
    client_id: str
    client_secret: str
    server: Server

    def set_user(self, claims: dict[str, Any]) -> None:
        """Who signs in at the provider from now on (their UserInfo claims)."""
        authn = self.server.context.authn_broker["anon"]["method"]
        authn.user = claims["sub"]
        self.server.context.userinfo.db[claims["sub"]] = claims


def _op(issuer: str, port: int, state: Path, user: dict[str, Any]) -> Server:
    conf = copy.deepcopy(OP_DEFAULT_CONFIG)
    conf.update({
        "issuer": issuer,
        "keys": {"private_path": str(state / "op_jwks.json"), "uri_path": "jwks.json",
                 "key_defs": [{"type": "RSA", "use": ["sig"]},
                              {"type": "EC", "crv": "P-256", "use": ["sig"]}],
                 "read_only": False},
        "authentication": {"anon": {
            "acr": PASSWORD_ACR, "class": "idpyoidc.server.user_authn.user.NoAuthn",
            "kwargs": {"user": user["sub"]}}},
        "userinfo": {"class": "idpyoidc.server.user_info.UserInfo",
                     "kwargs": {"db": {user["sub"]: user}}},
        "token_handler_args": {
            "jwks_def": {"private_path": str(state / "token_jwks.json"), "read_only": False,
                         "key_defs": [{"type": "oct", "bytes": "24", "use": ["enc"],
                                       "kid": "code"}]},
            "code": {"kwargs": {"lifetime": 600}},
            "token": {"class": "idpyoidc.server.token.jwt_token.JWTToken",
                      "kwargs": {"lifetime": 3600}},
            "id_token": {"class": "idpyoidc.server.token.id_token.IDToken", "kwargs": {}}},
        "template_dir": str(state),
    })
    conf["cookie_handler"]["kwargs"]["encrypter"]["kwargs"]["keys"]["private_path"] = \
        str(state / "cookie_jwks.json")
    return Server(OPConfiguration(conf=conf, base_path=str(state), domain="127.0.0.1",
                                  port=port), cwd=str(state))


def _app(op: Server) -> web.Application:
    def answer(endpoint: Any, request: Any, args: dict[str, Any]) -> web.Response:
        done = endpoint.do_response(request=request, **args)
        headers = dict(done.get("http_headers", []))
        status = 400 if "error" in args else 200
        return web.Response(text=done["response"], status=status,
                            content_type=headers.get("Content-type", "application/json")
                            .split(";")[0])

    async def discovery(request: web.Request) -> web.Response:
        endpoint = op.get_endpoint("provider_config")
        return answer(endpoint, None, endpoint.process_request())

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(op.keyjar.export_jwks(issuer_id=""))

    async def authorization(request: web.Request) -> web.Response:
        endpoint = op.get_endpoint("authorization")
        parsed = endpoint.parse_request(request.query_string)
        if "error" in parsed:
            return web.json_response(parsed.to_dict(), status=400)
        args = endpoint.process_request(parsed)
        if "error" in args:
            return web.json_response({"error": args["error"]}, status=400)
        done = endpoint.do_response(request=parsed, **args)
        return web.Response(status=302, headers={"Location": done["response"]})

    async def token(request: web.Request) -> web.Response:
        endpoint = op.get_endpoint("token")
        info = {"headers": {"authorization": request.headers.get("Authorization", "")},
                "url": str(request.url), "method": "POST"}
        try:
            parsed = endpoint.parse_request(await request.text(), http_info=info)
        except UnAuthorizedClient:
            return web.json_response({"error": "invalid_client"}, status=401)
        if "error" in parsed:
            return web.json_response(parsed.to_dict(), status=400)
        return answer(endpoint, parsed, endpoint.process_request(parsed, http_info=info))

    async def userinfo(request: web.Request) -> web.Response:
        endpoint = op.get_endpoint("userinfo")
        info = {"headers": {"authorization": request.headers.get("Authorization", "")}}
        parsed = endpoint.parse_request({}, http_info=info)
        if "error" in parsed:
            return web.json_response(parsed.to_dict(), status=401)
        return answer(endpoint, parsed, endpoint.process_request(parsed, http_info=info))

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks.json", jwks)
    app.router.add_get("/authorization", authorization)
    app.router.add_post("/token", token)
    app.router.add_get("/userinfo", userinfo)
    return app


@asynccontextmanager
async def oidc_provider(state: Path, redirect_uri: str, user: dict[str, Any],
                        client_secret: str = "portal-client-secret-0123456789"  # noqa: S107
                        ) -> AsyncIterator[RunningProvider]:
    """The provider on a free loopback port, `redirect_uri` registered for client
    "qsign-portal", `user` (with its "sub") signed in there."""
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    op = _op(issuer, port, state, user)
    op.context.cdb["qsign-portal"] = {
        "client_id": "qsign-portal", "client_secret": client_secret,
        "redirect_uris": [(redirect_uri, {})], "client_salt": "qsign",
        "token_endpoint_auth_method": "client_secret_basic",
        "response_types_supported": ["code"],
        "allowed_scopes": ["openid", "email", "profile"]}
    server = TestServer(_app(op), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield RunningProvider(issuer, "qsign-portal", client_secret, op)
    finally:
        await server.close()
