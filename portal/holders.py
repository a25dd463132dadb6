"""Whose certificate is it? A signer signs only with a certificate issued to them
(SECURITY #39; a qualified signature rests on the signer's sole control).

A certificate is the invited signer's when, in this order:
1. this service enrolled it for the signer's address (portal/enrolment.py registers it
   in `enrolments.certificate`): it is theirs, whatever name the link bears;
2. it was enrolled here for another address, or another signer of the same transaction
   already signed with it: it is someone else's;
3. its subject (EN 319 412-2 §4.2.4: givenName and surname, else the commonName) does
   not name the person the requester invited, compared as enrolment compares names
   (portal/identity/names.py: case, accents, several given names): someone else's;
4. this service enrolled the signer, and this is none of their certificates: refused
   (the signer may enrol again for a new one).
Otherwise (a certificate from another provider, the name right) it is theirs.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from asn1crypto import x509

from portal.identity import names
from portal.store import Signer, Store


class Refusal(StrEnum):
    """Why a certificate is not the signer's (portal/API.md `CERTIFICATE_NOT_SIGNERS`)."""

    NAME = "name"  # its subject names someone else
    ENROLLED_ELSEWHERE = "another-person"  # enrolled here for another person, or used
    # by another signer of this transaction
    NOT_ENROLLED = "not-enrolled"  # the signer was enrolled here, with other certificates


@dataclass(frozen=True)
class Holder:
    """The person a certificate names."""

    given_names: str
    surname: str
    common_name: str

    @property
    def name(self) -> str:
        return self.common_name or f"{self.given_names} {self.surname}".strip()


@dataclass(frozen=True)
class Ownership:
    holder: Holder
    refusal: Refusal | None

    @property
    def own(self) -> bool:
        return self.refusal is None


def holder_of(certificate: bytes) -> Holder:
    """The subject's names (EN 319 412-2 §4.2.4); a certificate that does not parse names
    nobody."""
    try:
        subject = x509.Certificate.load(certificate).subject.native
    except ValueError:
        return Holder("", "", "")

    def text(key: str) -> str:
        value = subject.get(key)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        return value.strip() if isinstance(value, str) else ""

    given, surname, common = text("given_name"), text("surname"), text("common_name")
    if not surname and common:
        given, _, surname = common.rpartition(" ")
    return Holder(given, surname, common)


def names_person(invited: str, holder: Holder) -> bool:
    """Does the certificate name the invited person? The invitation's last word is the
    surname, as at enrolment; either side may carry more given names after the first."""
    given, _, surname = invited.strip().rpartition(" ")
    surname = surname or invited.strip()
    if not surname or not holder.surname:
        return False
    try:
        return (names.compare(given, surname, [holder.given_names], holder.surname).matches
                or names.compare(holder.given_names, holder.surname, [given],
                                 surname).matches)
    except names.NameInvalid:
        # Outside the Latin alphabet: the same words, case and normalisation aside.
        return _words(invited) == _words(f"{holder.given_names} {holder.surname}")


def _words(text: str) -> list[str]:
    return unicodedata.normalize("NFC", text).casefold().split()


def ownership(store: Store, signer: Signer, certificate: bytes) -> Ownership:
    """Whether `certificate` is `signer`'s (the rules above). One database read."""
    holder = holder_of(certificate)
    email = signer.email.lower()
    with store.db.transaction() as cur:
        cur.execute("SELECT lower(s.email), e.certificate FROM enrolments e "
                    "JOIN signers s ON s.id = e.signer_id "
                    "WHERE e.certificate IS NOT NULL AND (lower(s.email) = ? "
                    "OR e.certificate = ?)", (email, certificate))
        enrolled = [(str(owner), bytes(der)) for owner, der in cur.fetchall()]
        cur.execute("SELECT 1 FROM signing_sessions ss JOIN signers s ON s.id = ss.signer_id"
                    " WHERE s.transaction_id = ? AND ss.state = 'completed' "
                    "AND lower(s.email) <> ? AND ss.certificate = ?",
                    (signer.transaction_id, email, certificate))
        used_by_another = cur.fetchone() is not None
    theirs = [der for owner, der in enrolled if owner == email]
    if certificate in theirs:
        return Ownership(holder, None)
    if used_by_another or any(owner != email for owner, der in enrolled
                              if der == certificate):
        return Ownership(holder, Refusal.ENROLLED_ELSEWHERE)
    if signer.name.strip() and not names_person(signer.name, holder):
        return Ownership(holder, Refusal.NAME)
    if theirs:
        return Ownership(holder, Refusal.NOT_ENROLLED)
    return Ownership(holder, None)
