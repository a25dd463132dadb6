"""The server's own texts (mails, SMS code messages, legal text titles) in the signer's
language, from GNU gettext catalogs: portal/locale/<lang>/LC_MESSAGES/messages.po.

The msgid is the English text with {name} placeholders (str.format); a language
without a catalog, or a text without a translation, falls back to it. The .po files
are the only source: Babel compiles each one in memory on first use, so no .mo can go
stale and neither the wheel nor the .deb needs a compile step. The pages' own texts
stay in portal/web/i18n/*.json, which the browser reads.

New texts are marked with `N_` (kept for later) or `translate(lang, ...)`, and then
    pybabel extract -k N_ -k translate:2 -o messages.pot portal
    pybabel update -i messages.pot -d portal/locale
tests/unit/test_portal_i18n.py checks that every marked text has a French translation
with the same placeholders.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "messages"
LANGS = ("en", "fr")
SOURCE_LANG = "en"


def N_(message: str) -> str:  # gettext's own name for a deferred text
    """Marks a text for the catalogs where it is defined; `translate` it where used."""
    return message


@cache
def catalog(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of `lang` (the English msgids when there is none)."""
    if lang not in LANGS:
        return gettext.NullTranslations()
    source = resources.files("portal") / "locale" / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with source.open("rb") as po:
        parsed = read_po(po, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, parsed)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def translate(lang: str, message: str) -> str:
    """`message` (an English msgid) in `lang`."""
    return catalog(lang).gettext(message)
