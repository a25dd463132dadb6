"""Accounts' rows: users, browser sessions, password-reset links and OpenID Connect
sign-ins under way. Secrets (session cookies, reset links) are stored as their SHA-256
only, so a copy of the database opens nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ground.sql import Cursor
from portal.accounts.model import Session, User
from portal.errors import Code, PortalError
from portal.store.records import iso, new_id, when
from portal.store.tables import Tables

_USER = ("SELECT id, email, name, password_hash IS NOT NULL, totp_secret IS NOT NULL, "
         "oidc_subject, lang, notifications, is_service_admin, created_at, suspended_at "
         "FROM users ")
DEFAULT_NOTIFICATIONS = {"completed": True, "refused": True, "expired": True,
                         "message": True, "personalData": True}


def _user(row: Any) -> User:
    return User(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5], row[6],
                {**DEFAULT_NOTIFICATIONS, **json.loads(row[7])}, bool(row[8]),
                dt.datetime.fromisoformat(row[9]), when(row[10]))


class Users(Tables):
    def create_user(self, *, email: str, name: str, lang: str,
                    password_hash: str | None = None, oidc_subject: str | None = None,
                    is_service_admin: bool = False) -> User:
        with self.db.transaction() as cur:
            cur.execute("SELECT 1 FROM users WHERE email = ?", (email.lower(),))
            if cur.fetchone() is not None:
                raise PortalError(Code.BAD_REQUEST, "email: an account with this address "
                                  "exists: sign in instead", field="email")
            user_id = new_id()
            cur.execute("INSERT INTO users (id, email, name, password_hash, oidc_subject, "
                        "lang, notifications, is_service_admin, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (user_id, email.lower(), name, password_hash, oidc_subject, lang,
                         "{}", int(is_service_admin), iso(self.clock())))
            return self._user(cur, "WHERE id = ?", user_id)

    @staticmethod
    def _user(cur: Cursor, where: str, value: str) -> User:
        cur.execute(_USER + where, (value,))
        row = cur.fetchone()
        if row is None:
            raise PortalError(Code.NOT_FOUND, "no such user")
        return _user(row)

    def user(self, user_id: str) -> User:
        with self.db.transaction() as cur:
            return self._user(cur, "WHERE id = ?", user_id)

    def user_by_email(self, email: str) -> User | None:
        with self.db.transaction() as cur:
            cur.execute(_USER + "WHERE email = ?", (email.lower(),))
            row = cur.fetchone()
        return None if row is None else _user(row)

    def user_by_oidc(self, subject: str) -> User | None:
        with self.db.transaction() as cur:
            cur.execute(_USER + "WHERE oidc_subject = ?", (subject,))
            row = cur.fetchone()
        return None if row is None else _user(row)

    def link_oidc(self, user_id: str, subject: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE users SET oidc_subject = ? WHERE id = ?", (subject, user_id))

    def password_hash(self, user_id: str) -> str | None:
        with self.db.transaction() as cur:
            cur.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,))
            row = cur.fetchone()
        return None if row is None else row[0]

    def set_password(self, user_id: str, password_hash: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                        (password_hash, user_id))

    def update_profile(self, user_id: str, *, name: str | None = None,
                       lang: str | None = None,
                       notifications: dict[str, bool] | None = None) -> User:
        with self.db.transaction() as cur:
            if name is not None:
                cur.execute("UPDATE users SET name = ? WHERE id = ?", (name, user_id))
            if lang is not None:
                cur.execute("UPDATE users SET lang = ? WHERE id = ?", (lang, user_id))
            if notifications is not None:
                current = self._user(cur, "WHERE id = ?", user_id).notifications
                cur.execute("UPDATE users SET notifications = ? WHERE id = ?",
                            (json.dumps({**current, **notifications}, sort_keys=True),
                             user_id))
            return self._user(cur, "WHERE id = ?", user_id)

    # TOTP (RFC 6238): the secret and the last accepted time step, for replay refusal.

    def totp(self, user_id: str) -> tuple[str | None, int | None]:
        with self.db.transaction() as cur:
            cur.execute("SELECT totp_secret, totp_last_step FROM users WHERE id = ?",
                        (user_id,))
            row = cur.fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def set_totp(self, user_id: str, secret: str, step: int) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE users SET totp_secret = ?, totp_last_step = ? WHERE id = ?",
                        (secret, step, user_id))

    def take_totp_step(self, user_id: str, step: int) -> bool:
        """Record `step` as used; False when it, or a later one, was used already (RFC 6238
        §5.2: a code is accepted once)."""
        with self.db.transaction() as cur:
            cur.execute("UPDATE users SET totp_last_step = ? WHERE id = ? AND "
                        "(totp_last_step IS NULL OR totp_last_step < ?)",
                        (step, user_id, step))
            return bool(cur.rowcount == 1)

    # Sessions.

    def open_session(self, digest: str, user_id: str, *, stage: str, csrf: str, via: str,
                     lifetime: dt.timedelta) -> None:
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO account_sessions (digest, user_id, stage, csrf, via, "
                        "created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (digest, user_id, stage, csrf, via, iso(now), iso(now),
                         iso(now + lifetime)))

    def session(self, digest: str, idle: dt.timedelta) -> Session | None:
        """The live session `digest` names, its idle time restarted; None when there is
        none, or it passed its absolute expiry or `idle` without use (then it is ended)."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("SELECT user_id, stage, csrf, via, created_at, last_seen_at, "
                        "expires_at FROM account_sessions WHERE digest = ?", (digest,))
            row = cur.fetchone()
            if row is None:
                return None
            found = Session(row[0], row[1], row[2], row[3],
                            dt.datetime.fromisoformat(row[4]),
                            dt.datetime.fromisoformat(row[5]),
                            dt.datetime.fromisoformat(row[6]))
            if found.expires_at <= now or found.last_seen_at + idle <= now:
                cur.execute("DELETE FROM account_sessions WHERE digest = ?", (digest,))
                return None
            cur.execute("UPDATE account_sessions SET last_seen_at = ? WHERE digest = ?",
                        (iso(now), digest))
            return found

    def advance_session(self, digest: str, stage: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE account_sessions SET stage = ? WHERE digest = ?",
                        (stage, digest))

    def end_session(self, digest: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM account_sessions WHERE digest = ?", (digest,))

    def end_sessions_of(self, user_id: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM account_sessions WHERE user_id = ?", (user_id,))

    # Password-reset links: single use, expiring.

    def add_reset(self, digest: str, user_id: str, expires_at: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO password_resets (digest, user_id, created_at, "
                        "expires_at) VALUES (?, ?, ?, ?)",
                        (digest, user_id, iso(self.clock()), iso(expires_at)))

    def reset_user(self, digest: str) -> str:
        """The user a live reset link is for; LINK_INVALID / LINK_EXPIRED otherwise."""
        with self.db.transaction() as cur:
            return self._reset(cur, digest)

    def _reset(self, cur: Cursor, digest: str) -> str:
        cur.execute("SELECT user_id, expires_at, used_at FROM password_resets "
                    "WHERE digest = ?", (digest,))
        row = cur.fetchone()
        if row is None or row[2] is not None:
            raise PortalError(Code.LINK_INVALID, "this link is not valid or was used")
        if dt.datetime.fromisoformat(row[1]) <= self.clock():
            raise PortalError(Code.LINK_EXPIRED)
        return str(row[0])

    def use_reset(self, digest: str, password_hash: str) -> str:
        """Set the new password through a live link, once; every session of the user
        ends. Returns the user's id."""
        with self.db.transaction() as cur:
            user_id = self._reset(cur, digest)
            cur.execute("UPDATE password_resets SET used_at = ? WHERE digest = ? AND "
                        "used_at IS NULL", (iso(self.clock()), digest))
            if cur.rowcount != 1:
                raise PortalError(Code.LINK_INVALID, "this link was used")
            cur.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                        (password_hash, user_id))
            cur.execute("DELETE FROM account_sessions WHERE user_id = ?", (user_id,))
            return user_id

    # OpenID Connect sign-ins under way.

    def add_oidc_login(self, state: str, nonce: str, verifier: str,
                       expires_at: dt.datetime) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO oidc_logins (state, nonce, verifier, created_at, "
                        "expires_at) VALUES (?, ?, ?, ?, ?)",
                        (state, nonce, verifier, iso(self.clock()), iso(expires_at)))

    def take_oidc_login(self, state: str) -> tuple[str, str] | None:
        """The nonce and PKCE verifier of sign-in `state`, once; None if unknown or old."""
        with self.db.transaction() as cur:
            cur.execute("SELECT nonce, verifier, expires_at FROM oidc_logins "
                        "WHERE state = ?", (state,))
            row = cur.fetchone()
            cur.execute("DELETE FROM oidc_logins WHERE state = ? OR expires_at <= ?",
                        (state, iso(self.clock())))
        if row is None or dt.datetime.fromisoformat(row[2]) <= self.clock():
            return None
        return str(row[0]), str(row[1])

    def set_service_admin(self, email: str, flag: bool) -> User:
        """Flag (or unflag) the account at `email` as service administrator
        (`qsign portal admin`: only at the machine, like the bootstrap token)."""
        with self.db.transaction() as cur:
            cur.execute("UPDATE users SET is_service_admin = ? WHERE email = ?",
                        (int(flag), email.lower()))
            if cur.rowcount != 1:
                raise PortalError(Code.NOT_FOUND, f"no account for {email}")
            return self._user(cur, "WHERE email = ?", email.lower())

    def purge_expired(self, idle: dt.timedelta) -> int:
        """Delete sessions past their absolute or idle expiry, and sign-ins and reset
        links past theirs (the portal's sweeper, every minute); returns the rows gone."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM account_sessions WHERE expires_at <= ? OR "
                        "last_seen_at <= ?", (iso(now), iso(now - idle)))
            gone = int(cur.rowcount)
            cur.execute("DELETE FROM oidc_logins WHERE expires_at <= ?", (iso(now),))
            gone += int(cur.rowcount)
            cur.execute("DELETE FROM password_resets WHERE expires_at <= ?", (iso(now),))
            return gone + int(cur.rowcount)
