"""Which mails a requester wants (personal settings, `/api/account` "notifications") and
in which language: the mails about a transaction go to its requester's address; when
that address has an account, its preferences and language apply."""

from __future__ import annotations

from ground.sql import Database
from portal.accounts.users import Users

# The mail kind (portal/mail.py) -> the preference that turns it off.
PREFERENCE = {"completed-requester": "completed", "refused": "refused",
              "expired": "expired", "message": "message", "corrected": "personalData"}


def requester_wants(db: Database, email: str, kind: str,
                    default_lang: str = "en") -> tuple[bool, str]:
    """Whether the requester at `email` wants mail `kind`, and its language."""
    user = Users(db).user_by_email(email)
    if user is None:
        return True, default_lang
    return user.notifications.get(PREFERENCE.get(kind, ""), True), user.lang
