"""The mails a workspace's signers receive, in the workspace's words when it set its own
(portal/API.md "Mail settings"): a text replaces the portal's for one kind of mail
(`invite`, `reminder`), with only the placeholders below filled in (never Python's format
fields: a text is a requester's input); the requester's message of a transaction is
added to its invitations and reminders; the sender's display name goes into From."""

from __future__ import annotations

import re

from portal.mail import compose
from portal.store.workspace_mail import MailSettings
from portal.translations import translate

PLACEHOLDERS = ("name", "requester", "title", "expires", "url", "message")
KINDS = ("invite", "reminder")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def unknown_placeholders(text: str) -> list[str]:
    """The {fields} of `text` that are not placeholders."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(text)
            if m.group(1) not in PLACEHOLDERS]


def _fill(text: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def signer_mail(settings: MailSettings, message: str | None, kind: str, lang: str,
                **values: str) -> tuple[str, str]:
    """Subject and body of a mail to a signer (`kind` as in portal/mail.py)."""
    own = settings.texts.get(kind)
    filled = {**values, "message": message or ""}
    if own is not None:
        return _fill(own["subject"], filled), _fill(own["body"], filled)
    subject, body = compose(kind, lang, **values)
    if message and kind in KINDS:
        body += "\n" + translate(lang, "Message from {requester}:").format(
            requester=values.get("requester", "")) + "\n" + message + "\n"
    return subject, body
