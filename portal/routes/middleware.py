"""What every request passes through, outermost first: the security headers (one
Content-Security-Policy for the pages), the one mapping from errors to answers (the codes
and statuses are portal/errors.py), and the cross-site check of state-changing signer and
Personal Space requests (portal/cross_site.py). Request bodies are read by
portal/routes/parse.py's `read_body` (portal/json_body.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from portal.blobs import BlobCorrupt, BlobMissing
from portal.config import PortalConfig
from portal.cross_site import same_origin_only
from portal.errors import Code, PortalError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own refusals (no route, wrong method) in the portal's codes.
_HTTP_CODES = {404: Code.NOT_FOUND, 405: Code.BAD_REQUEST}


def _answer(error: PortalError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """PortalError -> its status and JSON body; anything else -> 500 INTERNAL with the
    details in the log only."""
    try:
        return await handler(request)
    except PortalError as exc:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc)
        return _answer(exc)
    except (BlobMissing, BlobCorrupt) as exc:
        log.error("document store: %s", exc)
        return _answer(PortalError(Code.INTERNAL))
    except web.HTTPRequestEntityTooLarge:
        return _answer(PortalError(Code.PAYLOAD_TOO_LARGE))
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, Code.BAD_REQUEST)
        return web.json_response(PortalError(code, exc.reason).body(), status=exc.status)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _answer(PortalError(Code.INTERNAL))


def content_security_policy(agent_port: int) -> str:
    """The pages' CSP (CSP Level 3): scripts and styles from the portal itself (no inline
    script or style anywhere), the agent's JS client and socket on loopback."""
    agent = f"http://127.0.0.1:{agent_port} ws://127.0.0.1:{agent_port}"
    return (f"default-src 'self'; script-src 'self' http://127.0.0.1:{agent_port}; "
            f"connect-src 'self' {agent}; img-src 'self' data:; style-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def security_headers(agent_port: int) -> Middleware:
    """Links in URLs are capabilities: no answer sends a Referer; API answers are not
    cached; everything else (pages, static files, legal texts) carries the CSP."""
    csp = content_security_policy(agent_port)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        else:
            response.headers.setdefault("Content-Security-Policy", csp)
        return response

    return middleware


def middlewares(config: PortalConfig) -> list[Middleware]:
    return [security_headers(config.agent_port), errors, same_origin_only(config.base_url)]
