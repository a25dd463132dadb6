"""What every route handler reaches through `request.app[PORTAL]`: the portal's parts,
built once per app (aiohttp's typed `web.AppKey`), with the links and mails that several
audiences send."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ground.files import write_atomically
from portal.accounts.notifications import requester_wants
from portal.blobs import BlobStore
from portal.config import PortalConfig
from portal.enrolment import EnrolmentDesk
from portal.links import LinkSigner, Purpose
from portal.mail import Mailer, compose
from portal.otp import SmsOtp
from portal.signing import SigningDesk
from portal.store import Signer, Store, Transaction
from portal.webhooks import WebhookDesk
from portal.workspace_mail import signer_mail

SPACE_LINK_DAYS = 30


@dataclass
class Portal:
    """Everything a handler needs, built once per app."""

    config: PortalConfig
    store: Store
    blobs: BlobStore
    links: LinkSigner
    otp: SmsOtp
    mailer: Mailer
    desk: SigningDesk
    enrolment: EnrolmentDesk
    requester_token: str
    webhooks: WebhookDesk  # a workspace's events, queued and delivered
    bulk_wake: asyncio.Event = field(default_factory=asyncio.Event)  # routes/bulk.py

    def invite_url(self, tx: Transaction, signer: Signer) -> str:
        token = self.links.make(Purpose.INVITE, signer.id, generation=signer.generation,
                                expires_at=int(tx.expires_at.timestamp()))
        return f"{self.config.base_url}/s/{token}"

    def space_url(self, email: str) -> str:
        expires = self.store.clock() + dt.timedelta(days=SPACE_LINK_DAYS)
        token = self.links.make(Purpose.SPACE, email.lower(),
                                expires_at=int(expires.timestamp()))
        return f"{self.config.base_url}/me/{token}"

    async def mail(self, to: str, kind: str, lang: str, **values: str) -> None:
        subject, body = compose(kind, lang, **values)
        await asyncio.to_thread(self.store.queue_mail, to, subject, body)
        self.mailer.wake()

    async def mail_requester(self, tx: Transaction, kind: str, **values: str) -> None:
        """Mail `kind` to `tx`'s requester, in their account's language, unless their
        notification preferences turn it off (portal/accounts/notifications.py)."""
        wanted, lang = await asyncio.to_thread(requester_wants, self.store.db,
                                               tx.requester_email, kind)
        if wanted:
            await self.mail(tx.requester_email, kind, lang, **values)

    def transaction_url(self, tx: Transaction) -> str:
        """The requester's view of `tx` (the requester page opens it)."""
        return f"{self.config.base_url}/requester?tx={tx.id}"

    def notify_requester_on_correction(self, tx: Transaction) -> bool:
        """Whether a signer's correction of personal data is e-mailed to the requester
        (the portal's setting; a workspace setting, when there is one, decides here)."""
        return self.config.notify_requester_on_correction

    async def invite(self, tx: Transaction, signer: Signer, *, replaces: bool = False
                     ) -> None:
        """The invitation mail; `replaces`: a new link that revokes the previous one."""
        await self.signer_mail(tx, signer, "reinvite" if replaces else "invite",
                               name=signer.name or signer.email,
                               requester=tx.requester_name, title=tx.title,
                               expires=tx.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                               url=self.invite_url(tx, signer))

    async def signer_mail(self, tx: Transaction, signer: Signer, kind: str,
                          **values: str) -> None:
        """A mail to a signer in the words and sender name of the transaction's workspace
        when it set its own (portal/workspace_mail.py)."""
        settings, message = await asyncio.to_thread(self.store.transaction_mail, tx.id)
        subject, body = signer_mail(settings, message, kind, signer.lang, **values)
        await asyncio.to_thread(self.store.queue_mail, signer.email, subject, body,
                                settings.sender_name)
        self.mailer.wake()


PORTAL = web.AppKey("portal", Portal)


def requester_token(state_dir: Path) -> str:
    """The requester API's bearer token, made on first use (`qsign portal token`)."""
    path = state_dir / "requester.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, token.encode() + b"\n")
        return token
