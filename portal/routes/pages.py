"""What a browser opens: the HTML pages, rendered from server-side templates that extend
one layout (portal/templates/base.html: the head, the site header and footer exist
once), the versioned legal texts, the static files (portal/web/: scripts, styles and the
i18n texts, which i18n.js puts into the pages), and the health check.

The templates give structure only: every visible text is translated in the browser from
portal/web/i18n/<lang>.json, and no template has an inline script or style, so the one
CSP (portal/routes/middleware.py) needs no nonce or hash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from portal import legal
from portal.errors import Code, PortalError

WEB = resources.files("portal") / "web"
# The markup's own texts are English; i18n.js sets <html lang> to the language it shows.
MARKUP_LANG = "en"
# Each page's template (portal/templates/<name>), by its route.
PAGES = {
    "/": "index.html",
    "/requester": "requester.html",
    "/outbox": "outbox.html",
    "/s/{invite}": "signer.html",
    "/me/{space}": "me.html",
    "/id/{session}": "identity.html",  # "continue on my smartphone"
    "/console": "console.html",  # the service administrator's master console
    "/workspace/{ws}/start": "start.html",  # getting started: a first transaction
    "/workspace/{ws}/identity-documents": "identity_documents.html",
    "/templates": "templates.html",  # a workspace's templates and bulk sends (?ws=)
    "/advanced": "advanced.html",  # a workspace's webhooks and mail settings (?ws=)
    "/validate": "validate.html",  # anyone checks a signed PDF (issue 16)
    # Requesters' accounts (issue 15): sign-in, the e-mailed links, their own pages.
    "/signin": "signin.html",
    "/reset/{token}": "reset.html",  # the password-reset link
    "/join/{token}": "join.html",  # a workspace invitation
    "/settings": "settings.html",
    "/workspace": "workspace.html",
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".json": "application/json",
          ".svg": "image/svg+xml", ".png": "image/png", ".html": "text/html",
          ".ico": "image/vnd.microsoft.icon"}


def _options() -> dict[str, Any]:
    # A variable a page forgot is an error, not an empty string.
    return {"loader": jinja2.PackageLoader("portal", "templates"),
            "undefined": jinja2.StrictUndefined, "trim_blocks": True, "lstrip_blocks": True}


def setup_templates(app: web.Application) -> None:
    """The app's Jinja environment (aiohttp-jinja2), autoescaping everywhere."""
    aiohttp_jinja2.setup(app, default_helpers=False, autoescape=True, **_options())


def environment() -> jinja2.Environment:
    """The same environment outside an app, for checks that read the pages."""
    return jinja2.Environment(autoescape=True, **_options())


def render_page(env: jinja2.Environment, name: str) -> str:
    """The HTML of page `name`; NOT_FOUND when its template is not installed."""
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise PortalError(Code.NOT_FOUND, f"page {name} is not installed") from None
    return template.render(lang=MARKUP_LANG)


def page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        html = render_page(aiohttp_jinja2.get_env(request.app), name)
        return web.Response(text=html, content_type="text/html", charset="utf-8")
    return handler


async def legal_text(request: web.Request) -> web.Response:
    found = legal.text(request.match_info["kind"], request.match_info["version"],
                       request.query.get("lang", "en"))
    if found is None:
        raise PortalError(Code.NOT_FOUND, "no such text")
    return web.Response(text=found.html, content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    if ".." in path.split("/") or path.startswith("/"):
        raise PortalError(Code.NOT_FOUND)
    resource = WEB.joinpath(*path.split("/"))
    try:
        data = resource.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise PortalError(Code.NOT_FOUND, "no such file") from None
    suffix = Path(path).suffix
    return web.Response(body=data, content_type=_TYPES.get(suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})


async def favicon(request: web.Request) -> web.Response:
    """/favicon.ico, which browsers ask for whatever the page's head says."""
    return web.Response(body=WEB.joinpath("favicon.ico").read_bytes(),
                        content_type=_TYPES[".ico"],
                        headers={"Cache-Control": "public, max-age=86400"})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
