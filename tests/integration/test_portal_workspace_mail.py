"""A workspace's own mail texts and sender name reach the signer's mailbox over real SMTP
(aiosmtpd on loopback), with the requester's message; a text with a placeholder the
portal does not fill, or without the link, is refused naming its field."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.portal_service import running_portal
from tests.support.smtp_sink import SmtpSink, smtp_sink
from tests.support.waiting import wait_until_async

WS = "/api/v1/workspaces/default"
INVITE = {"subject": "{requester} vous attend : {title}",
          "body": "Bonjour {name},\n\nSignez ici : {url}\n\n{message}\n"}


def test_the_workspace_texts_and_sender_name_reach_the_signer(tmp_path: Path) -> None:
    async def main(sink: SmtpSink) -> None:
        async with running_portal(tmp_path, smtp_host="127.0.0.1", smtp_port=sink.port,
                                  mail_from="qsign <portal@example.test>") as portal:
            for texts, field in (
                    ({"invite": {**INVITE, "body": "{name.__class__} {url}"}},
                     "texts.invite.body"),
                    ({"invite": {**INVITE, "subject": "{password}"}}, "texts.invite.subject"),
                    ({"reminder": {"subject": "x", "body": "no link"}},
                     "texts.reminder.body")):
                refused = await portal.call("PUT", WS + "/mail", {"texts": texts},
                                            auth=True, expect=400)
                assert refused["field"] == field, refused
            bad_name = await portal.call("PUT", WS + "/mail", {"senderName": "A\r\nBcc: x"},
                                         auth=True, expect=400)
            assert bad_name["field"] == "senderName"
            await portal.call("PUT", WS + "/mail", {"senderName": "Agence Dupont",
                                                    "texts": {"invite": INVITE}}, auth=True)
            tx = await portal.create(signers=1, documents=1,
                                     message="Merci de signer avant vendredi.")
            await wait_until_async(lambda: sink.messages, "the invitation")
            [mail] = sink.messages
            assert mail["From"] == "Agence Dupont <portal@example.test>"
            assert mail["Subject"] == "Agence Dupont vous attend : Lease agreement"
            body = mail.get_payload(decode=True)
            assert isinstance(body, bytes)
            assert body.decode().replace("\r\n", "\n") == (f"Bonjour Alice Martin,\n\nSignez ici : "
                                     f"{tx['signers'][0]['inviteUrl']}\n\n"
                                     "Merci de signer avant vendredi.\n")

    with smtp_sink() as sink:
        asyncio.run(main(sink))
