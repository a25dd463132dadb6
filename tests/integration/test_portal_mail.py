"""The portal speaks SMTP to a real server on loopback (aiosmtpd): invitations reach it;
while the server is down mails wait in the outbox and go out once it is back."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.portal_service import RunningPortal, running_portal
from tests.support.ports import free_port
from tests.support.waiting import wait_until_async


class _Collect:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def test_invitations_go_out_over_smtp_and_wait_while_it_is_down(tmp_path: Path) -> None:
    port = free_port()
    sink = _Collect()

    async def main() -> None:
        async with running_portal(tmp_path, smtp_host="127.0.0.1", smtp_port=port,
                                  mail_from="qsign <portal@example.test>") as portal:
            await _down_then_up(portal)

    async def _down_then_up(portal: RunningPortal) -> None:
        tx = await portal.create(signers=1, documents=1)
        # Nothing listens yet: the mail stays pending with the error recorded.
        await wait_until_async(lambda: portal.store.mails()[0].attempts >= 1, "a first attempt")
        [pending] = portal.store.mails(pending=True)
        assert pending.last_error and "Connection refused" in pending.last_error
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            portal.state.mailer.wake()
            await wait_until_async(lambda: not portal.store.mails(pending=True), "delivery")
        finally:
            controller.stop()
        [message] = sink.messages
        assert message["To"] == "s1@example.test"
        assert message["From"] == "qsign <portal@example.test>"
        assert message["Subject"] == "Documents to sign: Lease agreement"
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        assert tx["signers"][0]["inviteUrl"] in body.decode()

    asyncio.run(main())
