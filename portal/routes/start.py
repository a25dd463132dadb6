"""Getting started (issue 15): the first-run page of a new workspace
(`/workspace/{ws}/start`, portal/templates/start.html) walks a requester through a first
transaction to themself with the simulated card `make run` sets up; the page creates it
through the ordinary API with the sample document served here."""

from __future__ import annotations

from functools import cache

from aiohttp import web

from portal.routes.state import PORTAL
from portal.samples import text_pdf

SAMPLE_PATH = "/api/v1/start/sample.pdf"


@cache
def _sample() -> bytes:
    return text_pdf("My first qualified signature", [
        "This document was sent by the getting-started page of qsign, to its own requester.",
        "Signing it with the simulated card proves the whole path: the agent, the card's "
        "PIN, the SMS code and the qualified certificate on the card."])


async def sample_pdf(request: web.Request) -> web.Response:
    """The same small PDF for everyone: nothing personal, no credential needed."""
    return web.Response(body=_sample(), content_type="application/pdf",
                        headers={"Content-Disposition": 'inline; filename="first.pdf"'})


async def start_facts(request: web.Request) -> web.Response:
    """What the page needs: where the signers' agent listens, the sample, and the
    signature level this portal can make (B-LT needs its time-stamping service)."""
    config = request.app[PORTAL].config
    return web.json_response({"agentPort": config.agent_port, "sample": SAMPLE_PATH,
                              "level": "B-LT" if config.timestamp_url else "B-B"})
