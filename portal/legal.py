"""The versioned texts a signer accepts before reading documents: the Personal Data
Protection Policy and the Terms and Conditions of Use. A consent is recorded with the
text's version, language and SHA-256, so what was shown can be proven later; a text
that changed since the page loaded is refused (CONSENT_OUTDATED)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from portal.translations import N_, translate

KINDS = ("privacy", "terms")  # before the documents (the signature service)
ENROLMENT_KINDS = ("issuance", "space")  # before a first certificate (issue 7)
CURRENT = {"privacy": "2026.1", "terms": "2026.1", "issuance": "2026.1", "space": "2026.1"}
LANGS = ("en", "fr")
TITLES = {  # English msgids, shown in the signer's language (portal/translations.py)
    "privacy": N_("Personal Data Protection Policy"),
    "terms": N_("Terms and Conditions of Use of the signature and validation services"),
    "issuance": N_("Personal Data Protection Policy for certificate issuance"),
    "space": N_("Terms and Conditions of Use for Personal Space creation"),
}


@dataclass(frozen=True)
class Text:
    kind: str
    version: str
    lang: str
    title: str
    html: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.html.encode()).hexdigest()


@cache
def text(kind: str, version: str, lang: str) -> Text | None:
    if kind not in CURRENT or lang not in LANGS or not version.replace(".", "").isalnum():
        return None
    resource = resources.files("portal") / "legal" / f"{kind}-{version}.{lang}.html"
    try:
        html = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Text(kind, version, lang, translate(lang, TITLES[kind]), html)


def current(lang: str, kinds: tuple[str, ...] = KINDS) -> list[Text]:
    found = [text(kind, CURRENT[kind], lang) for kind in kinds]
    return [t for t in found if t is not None]


def matches(kind: str, version: str, sha256: str) -> str | None:
    """The language whose current text has this hash, or None when outdated/unknown."""
    if CURRENT.get(kind) != version:
        return None
    for lang in LANGS:
        found = text(kind, version, lang)
        if found is not None and found.sha256 == sha256:
            return lang
    return None
