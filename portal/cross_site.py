"""Requests another site makes a signer's browser send are refused (SECURITY.md #43).

A page on another site can make the signer's browser POST to the portal: a form
(`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) or a
`no-cors` fetch needs no permission. If that page knew an invitation link (history, a
shared screen), it could refuse or accept in the signer's name. So every state-changing
request (any method but GET, HEAD, OPTIONS) to the signer's routes (`/api/s/...`) and
Personal Space (`/api/me/...`) must show that it comes from the portal's own pages:

1. `Sec-Fetch-Site` present (Fetch Metadata Request Headers, W3C; sent by every current
   browser and never settable by a page): only `same-origin`, or `none` (the person
   acted in the browser itself), pass. `same-site` and `cross-site` are refused.
2. Else `Origin` present (RFC 6454 §7; browsers send it on every POST since 2020): it
   must be the portal's public origin (`public_url`) or the origin the request itself
   addressed (its scheme and `Host`: only what the browser already judged same-origin
   can match). `null` (sandboxed frames, redirects) and anything else are refused.
3. Neither header: a program (curl, a script, the tests), or a browser too old for both.
   Passes only with `Content-Type: application/json`: a browser sends a cross-site
   request without a CORS preflight only with a CORS-safelisted content type or none
   (Fetch, "CORS-safelisted request-header"), and the portal never grants a preflight
   (it sends no `Access-Control-Allow-*` header). So no browser can be made to send what
   passes here; the same rule makes JSON bodies require their type (portal/json_body.py).

The refusal is `CROSS_SITE` (403). The agent's server-to-server routes
(`/api/v1/sms-otp/*`) and the requester's API (a bearer token no browser attaches by
itself) are not browser-ambient routes and are left to their own credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from portal.errors import Code, PortalError

GUARDED_PREFIXES = ("/api/s/", "/api/me/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def origin_of(url: str) -> str:
    """`scheme://host[:port]` as a browser serialises an origin (RFC 6454 §6.2)."""
    parsed = URL(url)
    scheme, host, port = (parsed.scheme or "").lower(), (parsed.raw_host or "").lower(), \
        parsed.explicit_port
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def check(request: web.Request, public_origin: str) -> None:
    """Raise CROSS_SITE unless `request` passes the rules in this module's docstring."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site.strip().lower() not in ("same-origin", "none"):
            raise PortalError(Code.CROSS_SITE, f"Sec-Fetch-Site: {fetch_site[:40]}")
        return
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            own = origin_of(f"{request.scheme}://{request.host}")
        except ValueError:  # a Host no browser sends
            own = ""
        if origin.strip() not in (public_origin, own):
            raise PortalError(Code.CROSS_SITE, "Origin is not this portal")
        return
    if request.content_type != "application/json":
        raise PortalError(Code.CROSS_SITE, "without Origin or Sec-Fetch-Site, only an "
                          "application/json request is accepted")


def same_origin_only(public_url: str) -> Middleware:
    """The aiohttp middleware applying `check` to the signer's and Personal Space's
    state-changing routes; `public_url` is the portal's configured base URL."""
    public_origin = origin_of(public_url)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in SAFE_METHODS and request.path.startswith(GUARDED_PREFIXES):
            check(request, public_origin)
        return await handler(request)

    return middleware
