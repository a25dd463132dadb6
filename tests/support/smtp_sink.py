"""An SMTP server on loopback for tests (aiosmtpd): it keeps every message it receives."""

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
    """aiosmtpd's handler: the messages received, in order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]

    async def link(self, address: str, path: str, count: int = 1) -> str:
        """The secret after `path` (e.g. "/join/") in the `count`-th mail to `address`
        that carries such a link, once it arrived."""
        def secrets() -> list[str]:
            found = []
            for message in self.to(address):
                body = message.get_payload(decode=True)
                text = body.decode() if isinstance(body, bytes) else ""
                found += re.findall(re.escape(path) + r"([A-Za-z0-9_-]+)", text)
            return found

        links = await wait_until_async(lambda: len(secrets()) >= count and secrets(),
                                       f"link {count} of {path} to {address}")
        return str(links[count - 1])


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """A running sink on 127.0.0.1:`sink.port`, stopped on leaving."""
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    try:
        yield sink
    finally:
        controller.stop()
