"""The requester's accounts over HTTP (portal/API.md "Authentication"): the route table
of sign-in, personal settings, API tokens and workspaces, and the workspace-scoped
mirror of the transaction routes. The handlers are in portal/routes/signin.py (sign-in,
sessions, password reset, invitations), portal/routes/oidc_signin.py (OpenID Connect),
portal/routes/settings.py (personal settings, API tokens) and portal/routes/workspaces.py
(workspaces, members)."""

from __future__ import annotations

from aiohttp import web

from portal.routes import oidc_signin, settings, signin, workspaces

LEGACY_TX = "/api/v1/transactions"
WORKSPACE_TX = "/api/v1/workspaces/{ws}/transactions"


def add_routes(r: web.UrlDispatcher) -> None:
    signin.add_routes(r)
    oidc_signin.add_routes(r)
    settings.add_routes(r)
    workspaces.add_routes(r)


def mirror_transaction_routes(r: web.UrlDispatcher) -> None:
    """Serve every `/api/v1/transactions...` route also under `/api/v1/workspaces/{ws}/
    transactions...` with the same handler (which finds `{ws}` in the path: portal/routes/
    requester.py `scope`). Called once every route is added, so none is left out."""
    present = {(route.method, route.resource.canonical)
               for route in r.routes() if route.resource is not None}
    for route in list(r.routes()):
        path = route.resource.canonical if route.resource is not None else ""
        if not path.startswith(LEGACY_TX) or route.method == "HEAD":
            continue
        mirrored = WORKSPACE_TX + path.removeprefix(LEGACY_TX)
        if (route.method, mirrored) not in present:
            r.add_route(route.method, mirrored, route.handler)
