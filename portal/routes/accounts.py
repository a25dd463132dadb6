"""The requester's accounts over HTTP (portal/API.md "Authentication"): the route table
of sign-in, personal settings, API tokens and workspaces, and the workspace-scoped
mirror of the transaction routes. The handlers are in portal/routes/signin.py (sign-in,
sessions, password reset, invitations, OpenID Connect), portal/routes/settings.py
(personal settings, API tokens) and portal/routes/workspaces.py (workspaces, members)."""

from __future__ import annotations

from aiohttp import web

from portal.routes import oidc_signin, requester, settings, signin, workspaces

WORKSPACE_TX = "/api/v1/workspaces/{ws}/transactions"


def add_routes(r: web.UrlDispatcher) -> None:
    signin.add_routes(r)
    oidc_signin.add_routes(r)
    settings.add_routes(r)
    workspaces.add_routes(r)
    r.add_post(WORKSPACE_TX, requester.create_transaction)
    r.add_get(WORKSPACE_TX, requester.list_transactions)
    r.add_get(WORKSPACE_TX + "/{id}", requester.get_transaction)
    r.add_get(WORKSPACE_TX + "/{id}/documents/{doc}", requester.requester_document)
    r.add_route("*", WORKSPACE_TX + "/{id}/messages", requester.requester_messages)
