"""The tests' SMTP sink (tests/support/portal_e2e.SmtpSink, aiosmtpd on loopback) served
on a free port for the length of a block, with the secret of an e-mailed link awaited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiosmtpd.controller import Controller

from tests.support.portal_e2e import SmtpSink as _Sink
from tests.support.ports import free_port
from tests.support.waiting import wait_until_async


@dataclass
class SmtpSink(_Sink):
    port: int = 0

    async def link(self, address: str, path: str, count: int = 1) -> str:
        """The secret after `path` (e.g. "/join/") in the `count`-th such link mailed to
        `address`, once it arrived."""
        links = await wait_until_async(
            lambda: len(self.links(address, path)) >= count and self.links(address, path),
            f"link {count} of {path} to {address}")
        return links[count - 1].split(path, 1)[1]


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
