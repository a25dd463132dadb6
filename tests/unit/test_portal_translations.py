"""The server's own texts (mails, SMS codes, legal titles) come from the gettext catalogs
in portal/locale/: every text the code marks is in each catalog, French translates it
with the same placeholders, and what the catalogs compile to is what the code sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from portal import legal
from portal.mail import TEMPLATES, compose
from portal.translations import LANGS, translate

PORTAL = Path(__file__).resolve().parents[2] / "portal"
# The keywords of portal/translations.py: N_(text) and translate(lang, text).
KEYWORDS = {"N_": None, "translate": (2,)}


def _marked() -> set[str]:
    found = set()
    for _, _, message, _, _ in extract_from_dir(PORTAL, method_map=[("**.py", "python")],
                                               keywords=KEYWORDS):
        assert isinstance(message, str), f"{message!r}: one text, no plural forms"
        found.add(message)
    return found


def _catalog(lang: str) -> Catalog:
    with (PORTAL / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=lang)


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def test_the_code_marks_the_mail_sms_and_legal_texts() -> None:
    marked = _marked()
    assert {text for pair in TEMPLATES.values() for text in pair} <= marked
    assert set(legal.TITLES.values()) <= marked
    assert any(text.startswith("qsign: {code} is your code to sign") for text in marked)


@pytest.mark.parametrize("lang", LANGS)
def test_each_catalog_holds_exactly_the_marked_texts(lang: str) -> None:
    catalog = _catalog(lang)
    assert {m.id for m in catalog if m.id} == _marked()
    assert not [m.id for m in catalog if m.id and m.fuzzy]


def test_french_translates_every_text_with_the_same_placeholders() -> None:
    for message in _catalog("fr"):
        if not message.id:
            continue
        assert isinstance(message.id, str) and isinstance(message.string, str)
        assert message.string and message.string != message.id, message.id
        assert _placeholders(message.string) == _placeholders(message.id), message.id
        assert translate("fr", message.id) == message.string


def test_english_and_unknown_languages_get_the_source_texts() -> None:
    for text in _marked():
        assert translate("en", text) == translate("de", text) == text


def test_a_french_signer_gets_french_mails_and_titles() -> None:
    subject, body = compose("invite", "fr", name="Marie", requester="Pierre", title="Bail",
                            expires="2026-06-01", url="https://portal.example.test/s/x")
    assert subject == "Documents à signer : Bail"
    assert body.startswith("Bonjour Marie,\n\nPierre vous demande de signer : Bail.")
    assert "https://portal.example.test/s/x" in body
    terms = legal.text("terms", legal.CURRENT["terms"], "fr")
    assert terms is not None and terms.title.startswith("Conditions générales d'utilisation")
