"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for tests of
the portal's mails."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.ports import free_port
from tests.support.waiting import wait_until_async


class SmtpSink:
    """aiosmtpd's handler: every message received, in order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def bodies_to(self, address: str) -> list[str]:
        found = []
        for message in self.messages:
            if message["To"] == address:
                body = message.get_payload(decode=True)
                assert isinstance(body, bytes)
                found.append(body.decode())
        return found

    async def link(self, address: str, path: str, count: int = 1) -> str:
        """The secret after `path` (e.g. "/join/") in the `count`-th mail to `address`,
        once it arrived."""
        bodies = await wait_until_async(
            lambda: len(self.bodies_to(address)) >= count and self.bodies_to(address),
            f"mail {count} to {address}")
        match = re.search(re.escape(path) + r"([A-Za-z0-9_-]+)", bodies[count - 1])
        assert match, bodies[count - 1]
        return match.group(1)


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """A sink listening on a free loopback port (`sink.port`) until the block ends."""
    sink = SmtpSink()
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
