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
from email.utils import formataddr, make_msgid, parseaddr

from portal.config import PortalConfig
from portal.store import Mail, Store
from portal.translations import N_, translate

log = logging.getLogger(__name__)

# Subject and body of each mail in English (the msgids); {placeholders} filled by `compose`.
TEMPLATES: dict[str, tuple[str, str]] = {
    "invite": (
        N_("Documents to sign: {title}"),
        N_("Hello {name},\n\n{requester} asks you to sign: {title}.\n\n"
           "Open this link to read and sign the documents (it is personal, do not "
           "forward it; it expires on {expires}):\n{url}\n")),
    "reminder": (  # portal/routes/reminders.py
        N_("Reminder: documents to sign: {title}"),
        N_("Hello {name},\n\n{requester} is still waiting for your signature on: "
           "{title}.\n\nOpen this link to read and sign the documents (it is personal, do "
           "not forward it; it expires on {expires}):\n{url}\n")),
    "reinvite": (
        N_("New link to sign: {title}"),
        N_("Hello {name},\n\n{requester} asks you to sign: {title}.\n\n"
           "This link replaces the one we sent you before, which no longer works. Open it "
           "to go on (it is personal, do not forward it; it expires on {expires}):\n{url}\n")),
    "corrected": (
        N_("Personal data corrected: {title}"),
        N_("Hello {requester},\n\n{name} corrected the personal data you entered for "
           "\"{title}\":\n\nName: {old_name} -> {new_name}\nMobile phone: {old_phone} -> "
           "{new_phone}\n\nTheir identity document is checked against the corrected name "
           "before a certificate is issued. The transaction:\n{url}\n")),
    "refused": (
        N_("Signature refused: {title}"),
        N_("{name} refused to sign \"{title}\".\nReason: {reason}\n")),
    "completed": (
        N_("Signed documents: {title}"),
        N_("Hello {name},\n\nEveryone has signed \"{title}\". Your signed documents "
           "and your certificates are in your Personal Space:\n{url}\n")),
    "expired": (
        N_("Transaction expired: {title}"),
        N_("\"{title}\" expired before everyone signed. Signed so far: {signed}.\n")),
    # To the requester, who has no Personal Space: the transaction's page has the files.
    "completed-requester": (
        N_("Signed documents: {title}"),
        N_("Hello {name},\n\nEveryone has signed \"{title}\". On the transaction's page "
           "you can download the signed documents and see who signed and when:\n{url}\n\n"
           "Each signer received a link to their own Personal Space, where their signed "
           "documents and certificates are kept.\n")),
    "message": (
        N_("New message about: {title}"),
        N_("{name} wrote about \"{title}\":\n\n{text}\n")),
    "workspace-invite": (
        N_("Join the workspace {workspace}"),
        N_("Hello,\n\n{inviter} invites you to the workspace \"{workspace}\" as {role}.\n\n"
           "Open this link to create your account (it works once and expires on "
           "{expires}):\n{url}\n")),
    "password-reset": (
        N_("Reset your password"),
        N_("Hello {name},\n\nSomeone asked to reset the password of your account. If it "
           "was you, open this link (it works once and expires on {expires}):\n{url}\n\n"
           "If it was not you, ignore this mail: your password stays as it is.\n")),
}


def compose(kind: str, lang: str, **values: str) -> tuple[str, str]:
    """The mail's subject and body in `lang` (English when it has no catalog)."""
    subject, body = TEMPLATES[kind]
    return (translate(lang, subject).format(**values),
            translate(lang, body).format(**values))


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
        if mail.sender_name:  # a workspace's name before the portal's own address
            message.replace_header("From", formataddr(
                (mail.sender_name, parseaddr(self.config.mail_from)[1])))
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
