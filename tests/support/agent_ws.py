"""An agent in this process for wire tests: the real aiohttp app on a loopback port
(`with_agent`), WebSockets opened as a page on an origin would (`Agent.connect`), and
JSON-RPC calls over them (`rpc`); `page_socket` is an agent beside a running portal
and the socket its page holds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from agent.app import create_app
from agent.config import AgentConfig
from agent.tokens.registry import TokenRegistry
from tests.support.ports import free_port
from tests.support.waiting import DEADLINE

PORTAL = "https://portal.example.test"


class Agent:
    def __init__(self, server: TestServer, config: AgentConfig) -> None:
        self.server = server
        self.config = config
        self.session = aiohttp.ClientSession()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    async def connect(self, origin: str | None = PORTAL, host: str | None = None
                      ) -> aiohttp.ClientWebSocketResponse:
        headers = {"Host": f"127.0.0.1:{self.config.port}" if host is None else host}
        if origin is not None:
            headers["Origin"] = origin
        return await self.session.ws_connect(self.url + "/v1/ws", headers=headers)

    async def status(self, origin: str | None = PORTAL, host: str | None = None) -> int:
        try:
            ws = await self.connect(origin, host)
        except aiohttp.WSServerHandshakeError as error:
            return error.status
        await ws.close()
        return 101


async def rpc(ws: aiohttp.ClientWebSocketResponse, method: str,
              params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    """One JSON-RPC 2.0 call: its reply, carrying `request_id` or a null id (a request
    the agent answered without reading its id, e.g. when rate limited); notifications
    and other calls' replies in between are passed over."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    await ws.send_str(json.dumps(message))
    while True:
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.receive_str(), DEADLINE))
        if "id" in reply and reply["id"] in (request_id, None):
            return reply


def with_agent(tmp_path: Path, *, registry: TokenRegistry | None = None, **settings: Any
               ) -> Callable[[Callable[[Agent], Awaitable[None]]], None]:
    """Decorate a scenario to run it at once against a fresh agent on loopback."""

    def runner(scenario: Callable[[Agent], Awaitable[None]]) -> None:
        async def main() -> None:
            settings.setdefault("allowed_origins", (PORTAL,))
            config = AgentConfig(port=free_port(), state_dir=tmp_path / "state",
                                 pcsc=False, pkcs11_modules=(), **settings)
            app = create_app(config, registry or TokenRegistry(pcsc=False))
            server = TestServer(app, host="127.0.0.1", port=config.port)
            await server.start_server()
            agent = Agent(server, config)
            try:
                await scenario(agent)
            finally:
                await agent.session.close()
                await server.close()

        asyncio.run(main())

    return runner


@asynccontextmanager
async def page_socket(session: aiohttp.ClientSession, state_dir: Path, origin: str,
                      **settings: Any) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A real agent on a loopback port that allows `origin` (PC/SC on, configured by
    `settings`), and a WebSocket to it opened from `origin` as the page opens it."""
    config = AgentConfig(port=free_port(), state_dir=state_dir, allowed_origins=(origin,),
                         pkcs11_modules=(), **settings)
    server = TestServer(create_app(config, TokenRegistry()), host="127.0.0.1",
                        port=config.port)
    await server.start_server()
    try:
        async with session.ws_connect(f"http://127.0.0.1:{config.port}/v1/ws",
                                      headers={"Origin": origin}) as ws:
            yield ws
    finally:
        await server.close()
