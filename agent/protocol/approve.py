"""The agent's own local page for pairing approvals (DESIGN "Security model": the person
approves a pairing code outside the page that asked for it).

A web page must not be able to approve itself. The page lives at
http://127.0.0.1:PORT/v1/approve, and its calls need all of:

- a per-start secret (256 bits) that the agent writes to DIR/approve.secret (0600, in
  the 0700 state directory) and that reaches the page only in its URL's fragment
  (`qsign agent approve --open` prints that URL). A fragment is never sent in a request
  or a Referer; the page's script moves it into a header and removes it from the
  address bar;
- that header, `X-Qsign-Approval`: a header a cross-origin page can only send after a
  CORS preflight, which this agent never grants (no Access-Control-* header here);
- for POST, an `Origin` that is the agent's own (http://127.0.0.1:PORT,
  http://localhost:PORT or http://[::1]:PORT; exact strings), a JSON body, and, when
  the browser sends it, `Sec-Fetch-Site: same-origin`;
- the Host check every route has (DNS rebinding, SECURITY #4).

The HTML and script are static and hold no data; the page refuses to be framed
(CSP frame-ancestors 'none', X-Frame-Options DENY), so it cannot be click-jacked.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import logging
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from agent import confirmations
from agent.protocol.gate import GATE
from agent.protocol.jsonbody import JsonRefused, read_json
from agent.state import PairingError
from ground.files import write_atomically

log = logging.getLogger(__name__)

SECRET_FILE = "approve.secret"  # noqa: S105 - a file name, not a secret
HEADER = "X-Qsign-Approval"
PAGE_PATH = "/v1/approve"
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Approval:
    """The per-start secret and where it is written."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.path = state_dir / SECRET_FILE
        self.port = port
        self.secret = secrets.token_urlsafe(32)

    @property
    def own_origins(self) -> frozenset[str]:
        return frozenset({f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}",
                          f"http://[::1]:{self.port}"})

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.path, self.secret.encode(), 0o600)

    def remove(self) -> None:
        """Remove the file if it is still ours (another agent may have started since)."""
        try:
            # Constant time, as every secret here is compared (SECURITY #23).
            if hmac.compare_digest(self.path.read_text().strip().encode(),
                                   self.secret.encode()):
                self.path.unlink()
        except FileNotFoundError:
            pass

    def admits(self, request: web.Request, *, write: bool) -> bool:
        presented = request.headers.get(HEADER, "")
        if not hmac.compare_digest(presented.encode(), self.secret.encode()):
            return False
        origin = request.headers.get("Origin")
        if write and origin is None:
            return False
        if origin is not None and origin not in self.own_origins:
            return False
        site = request.headers.get("Sec-Fetch-Site")
        return site is None or site == "same-origin"


def approval_url(port: int, secret: str) -> str:
    """The page's address with the secret in its fragment."""
    return f"http://127.0.0.1:{port}{PAGE_PATH}#{secret}"


def read_secret(state_dir: Path) -> str | None:
    """The running agent's secret (for `qsign agent approve --open`), if any."""
    try:
        return (state_dir / SECRET_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


APPROVAL = web.AppKey("approval", Approval)


def _refused() -> web.Response:
    # The same answer for every refusal: nothing to learn from which check failed.
    return web.json_response({"error": "ORIGIN_NOT_ALLOWED",
                              "message": "open this page with: qsign agent approve --open"},
                             status=403, headers=_HEADERS)


def _static(name: str, content_type: str) -> web.Response:
    body = importlib.resources.files("agent").joinpath(f"web/{name}").read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8",
                        headers=_HEADERS)


async def page(request: web.Request) -> web.Response:
    return _static("approve.html", "text/html")


async def script(request: web.Request) -> web.Response:
    return _static("approve.js", "application/javascript")


async def stylesheet(request: web.Request) -> web.Response:
    return _static("approve.css", "text/css")


async def pending(request: web.Request) -> web.Response:

    if not request.app[APPROVAL].admits(request, write=False):
        return _refused()
    state = request.app[GATE].state
    waiting = await asyncio.to_thread(state.pending)
    asked = await asyncio.to_thread(confirmations.pending_confirmations, state)
    return web.json_response({"pending": [{"code": c, "origin": o} for c, o in waiting]
                              + [{"code": a.code.replace("-", ""), "origin": a.origin,
                                  "asks": a.description}
                                 for a in asked]},
                             headers=_HEADERS)


async def decide(request: web.Request) -> web.Response:
    """POST {"code": "ABCD-EFGH", "action": "approve" | "deny"}."""

    if not request.app[APPROVAL].admits(request, write=True):
        log.warning("refused a pairing decision from outside the agent's own page")
        return _refused()
    if request.content_type != "application/json":
        return _bad("a JSON body")
    try:
        body: Any = await read_json(request)
    except JsonRefused:
        body = None
    if not isinstance(body, dict) or set(body) != {"code", "action"}:
        return _bad('{"code", "action"}')
    code, action = body["code"], body["action"]
    if not isinstance(code, str) or not 1 <= len(code) <= 32 or action not in ("approve",
                                                                                "deny"):
        return _bad("code: the code the page shows; action: approve or deny")
    state = request.app[GATE].state
    try:
        kind, origin = await asyncio.to_thread(confirmations.decide, state, code,
                                               approve=action == "approve")
    except PairingError as exc:
        return web.json_response({"error": "PAIRING_CODE", "message": str(exc)}, status=404,
                                 headers=_HEADERS)
    log.info("pairing %s in the agent's page: %s", "approved" if action == "approve"
             else "denied", origin)
    return web.json_response({"origin": origin, "paired": action == "approve"
                              and kind == "pairing", "kind": kind},
                             headers=_HEADERS)


def _bad(message: str) -> web.Response:
    return web.json_response({"error": "BAD_REQUEST", "message": message}, status=400,
                             headers=_HEADERS)


def add_approval_routes(app: web.Application, state_dir: Path, port: int) -> None:
    """The page and its API; the secret file lives while the app runs."""
    approval = Approval(state_dir, port)
    app[APPROVAL] = approval

    async def lifecycle(app: web.Application) -> Any:
        approval.write()
        yield
        approval.remove()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get(PAGE_PATH, page)
    app.router.add_get(PAGE_PATH + "/approve.js", script)
    app.router.add_get(PAGE_PATH + "/approve.css", stylesheet)
    app.router.add_get(PAGE_PATH + "/pending", pending)
    app.router.add_post(PAGE_PATH + "/decide", decide)
