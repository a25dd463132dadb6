"""E-mail: notifications are queued in the database (with the change that causes them
where possible) and a delivery task speaks SMTP to the configured server, retrying with
back-off; a crash between queueing and delivery loses nothing. Without an SMTP server
the mails stay in the outbox for testers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from portal.config import PortalConfig
from portal.store import Mail, Store

log = logging.getLogger(__name__)

# Subjects and bodies per language; {placeholders} filled by `compose`.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "invite": {
        "en": ("Documents to sign: {title}",
               "Hello {name},\n\n{requester} asks you to sign: {title}.\n\n"
               "Open this link to read and sign the documents (it is personal, do not "
               "forward it; it expires on {expires}):\n{url}\n"),
        "fr": ("Documents à signer : {title}",
               "Bonjour {name},\n\n{requester} vous demande de signer : {title}.\n\n"
               "Ouvrez ce lien pour lire et signer les documents (il vous est personnel, "
               "ne le transférez pas ; il expire le {expires}) :\n{url}\n"),
    },
    "refused": {
        "en": ("Signature refused: {title}",
               "{name} refused to sign \"{title}\".\nReason: {reason}\n"),
        "fr": ("Signature refusée : {title}",
               "{name} a refusé de signer « {title} ».\nMotif : {reason}\n"),
    },
    "completed": {
        "en": ("Signed documents: {title}",
               "Hello {name},\n\nEveryone has signed \"{title}\". Your signed documents "
               "and your certificates are in your Personal Space:\n{url}\n"),
        "fr": ("Documents signés : {title}",
               "Bonjour {name},\n\nTous les signataires ont signé « {title} ». Vos "
               "documents signés et vos certificats sont dans votre Espace personnel :\n"
               "{url}\n"),
    },
    "expired": {
        "en": ("Transaction expired: {title}",
               "\"{title}\" expired before everyone signed. Signed so far: {signed}.\n"),
        "fr": ("Transaction expirée : {title}",
               "« {title} » a expiré avant que tous les signataires aient signé. "
               "Ont signé : {signed}.\n"),
    },
    "message": {
        "en": ("New message about: {title}",
               "{name} wrote about \"{title}\":\n\n{text}\n"),
        "fr": ("Nouveau message : {title}",
               "{name} a écrit au sujet de « {title} » :\n\n{text}\n"),
    },
}


def compose(kind: str, lang: str, **values: str) -> tuple[str, str]:
    subject, body = TEMPLATES[kind].get(lang, TEMPLATES[kind]["en"])
    return subject.format(**values), body.format(**values)


class Mailer:
    """Delivers the outbox's pending mails; `wake()` after queueing one."""

    def __init__(self, store: Store, config: PortalConfig) -> None:
        self.store = store
        self.config = config
        self._wake = asyncio.Event()
        self._password = (config.smtp_password_file.read_text().strip()
                          if config.smtp_password_file else None)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        delay = 1.0
        while True:
            self._wake.clear()
            failed = False
            if self.config.smtp_host:
                for mail in await asyncio.to_thread(self.store.mails, pending=True):
                    error = await asyncio.to_thread(self._deliver, mail)
                    await asyncio.to_thread(self.store.mail_attempted, mail.id, error)
                    failed = failed or error is not None
            delay = min(delay * 2, 300.0) if failed else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay if failed else 60)

    def _deliver(self, mail: Mail) -> str | None:
        message = EmailMessage()
        message["From"] = self.config.mail_from
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(idstring=mail.id, domain="qsign.invalid")
        message.set_content(mail.body)
        assert self.config.smtp_host is not None
        try:
            with smtplib.SMTP(self.config.smtp_host, self.config.smtp_port,
                              timeout=30) as smtp:
                if self.config.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.config.smtp_username and self._password is not None:
                    smtp.login(self.config.smtp_username, self._password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("mail to %s not delivered yet: %s", mail.to, exc)
            return f"{type(exc).__name__}: {exc}"
        log.info("mail %s delivered to %s", mail.id, mail.to)
        return None
