"""A portal service on loopback for tests: a real aiohttp server with its own state
directory, a settable clock, and helpers to create transactions and read the outbox.
It accepts one agent credential (`agent_token`, also in `agent_token_file` for an
agent's `portal_token_file`) at its SMS OTP routes."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from portal.agent_auth import new_agent_token
from portal.config import PortalConfig
from portal.identity.model import DocumentKind
from portal.routes.state import PORTAL, Portal
from portal.service import create_app
from portal.store import Store
from tests.support.pdfs import blank_pdf

SIGNER_NAMES = ("Alice Martin", "Bob Durand", "Chloé Petit")


@dataclass(frozen=True)
class SignerAtDocuments:
    """What the paths of every JSON route need: a one-signer transaction, its signer's
    invitation (consented: at the documents step), Personal Space and identity session."""

    tx: Any
    invite: str
    space: str
    identity: str


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class RunningPortal:
    server: TestServer
    session: aiohttp.ClientSession
    config: PortalConfig
    clock: Clock
    token: str
    agent_token: str
    agent_token_file: Path

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def store(self) -> Store:
        return self.server.app[PORTAL].store

    @property
    def state(self) -> Portal:
        return self.server.app[PORTAL]

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, method: str, path: str, body: Any = None, *,
                   auth: bool = False, agent: bool = False, expect: int | None = 200) -> Any:
        """`auth`: as the requester; `agent`: as an agent (the SMS OTP routes)."""
        headers = self.auth() if auth else \
            {"Authorization": f"Bearer {self.agent_token}"} if agent else None
        async with self.session.request(method, self.url + path, json=body,
                                        headers=headers) as response:
            data = await (response.json() if response.content_type == "application/json"
                          else response.read())
            if expect is not None:
                assert response.status == expect, (response.status, data)
            return data

    async def create(self, *, signers: int | list[dict[str, Any]] = 2, documents: int = 2,
                     **extra: Any) -> Any:
        """A transaction of blank PDFs; `signers`: how many made-up ones, or the list.
        The first made-up signer is Alice Martin, as tests/support/portal_card.py's
        certificate names her (a signer signs only with their own certificate)."""
        people = signers if isinstance(signers, list) else [
            {"name": SIGNER_NAMES[i] if i < len(SIGNER_NAMES) else f"Signer {i + 1}",
             "email": f"s{i + 1}@example.test",
             "phone": f"+3361234567{i}", "lang": "en" if i == 0 else "fr"}
            for i in range(signers)]
        body = {
            "title": "Lease agreement",
            "requester": {"name": "Agence Dupont", "email": "agence@example.test"},
            "documents": [{"name": f"doc{i + 1}.pdf",
                           "content": base64.b64encode(blank_pdf(i + 1)).decode()}
                          for i in range(documents)],
            "signers": people,
            "level": "B-B",  # no TSA in these tests; signing tests choose their level
            **extra,
        }
        return await self.call("POST", "/api/v1/transactions", body, auth=True, expect=201)

    def invite_path(self, tx: Any, index: int) -> str:
        url: str = tx["signers"][index]["inviteUrl"]
        return url.split("/s/", 1)[1]

    async def consent(self, invite: str) -> Any:
        view = await self.call("GET", f"/api/s/{invite}")
        accepted = [{"kind": c["kind"], "version": c["version"], "sha256": c["sha256"]}
                    for c in view["consents"]]
        return await self.call("POST", f"/api/s/{invite}/consents", {"accepted": accepted})

    async def signer_at_documents(self) -> SignerAtDocuments:
        tx = await self.create(signers=1, documents=1)
        invite = self.invite_path(tx, 0)
        await self.consent(invite)
        space = self.state.space_url("s1@example.test").split("/me/", 1)[1]
        identity = self.state.enrolment.identity.open_session(
            tx["signers"][0]["id"], DocumentKind.ID_CARD)
        return SignerAtDocuments(tx, invite, space, identity.id)

    def sms(self, phone: str) -> list[str]:
        return [text for _, text, _ in self.store.sms(phone)]


@asynccontextmanager
async def running_portal(tmp_path: Path, **settings: Any) -> AsyncIterator[RunningPortal]:
    clock = Clock()
    state = tmp_path / "portal"
    agent_token, digest = new_agent_token()
    agent_token_file = tmp_path / "agent-portal.token"
    tmp_path.mkdir(parents=True, exist_ok=True)
    agent_token_file.write_text(agent_token + "\n")
    agent_token_file.chmod(0o600)
    config = PortalConfig.from_mapping({"portal": {
        "state_dir": str(state), "agent_token_sha256": [digest], **settings}})
    store = Store.open(config.database_url, config.state_dir, clock)
    app = create_app(config, store=store)
    # `port` in settings: served there, so links made from the config reach it
    server = TestServer(app, host="127.0.0.1", port=settings.get("port"))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            token = (state / "requester.token").read_text().strip()
            yield RunningPortal(server, session, config, clock, token, agent_token,
                                agent_token_file)
    finally:
        await server.close()


def with_portal(**settings: Any) -> Callable[[Callable[[RunningPortal], Awaitable[None]]],
                                            Callable[..., None]]:
    """`async def test(portal)` -> a pytest test over SQLite and PostgreSQL
    (the `database_url` fixture), each with a fresh portal on loopback."""
    def wrap(body: Callable[[RunningPortal], Awaitable[None]]) -> Callable[..., None]:
        def test(tmp_path: Path, database_url: str) -> None:
            async def main() -> None:
                async with running_portal(tmp_path, database_url=database_url,
                                          **settings) as portal:
                    await body(portal)
            asyncio.run(main())

        test.__name__ = body.__name__
        test.__doc__ = body.__doc__
        test.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for name in ("tmp_path", "database_url")])
        return test
    return wrap
