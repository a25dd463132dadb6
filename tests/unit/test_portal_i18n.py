"""The portal's pages (portal/templates/ rendered as the portal serves them, portal/web/)
read statically: both languages have the same keys, every text the HTML and JS use
exists, every error code of portal/API.md and of the agent has a sentence, every static
form control has a label, the pages share one layout, and nothing loads from outside
(the pages must work on a machine with no internet)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

import pytest

from agent.protocol.errors import ErrorCode
from portal.identity.http import STATUS as IDENTITY_STATUS
from portal.identity.model import CHALLENGE_ACTIONS
from portal.routes.pages import PAGES as ROUTES
from portal.routes.pages import environment, render_page

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "portal" / "web"
API = (ROOT / "portal" / "API.md").read_text()
SCRIPTS = sorted(WEB.glob("*.js"))
LANGUAGES = ("en", "fr")


class Page(NamedTuple):
    """A page as the portal serves it: its template rendered within the one layout."""

    name: str
    html: str

    def read_text(self) -> str:
        return self.html


_TEMPLATES = environment()
PAGES = [Page(name, render_page(_TEMPLATES, name)) for name in sorted(ROUTES.values())]
SIGNER_HTML = render_page(_TEMPLATES, "signer.html")

# Keys a script builds at run time from a value: prefix -> where the values come from.
DYNAMIC_PREFIXES = ("error.", "agentError.", "status.", "reason.", "consent.accept_",
                    "caReason.", "challenge.", "capture.noCamera.", "capture.mismatchField.")
# The same word in both languages (brand, acronyms, format names).
SAME_IN_BOTH = {"common.brand", "outbox.smsHeading", "documents.listLabel", "signer.stepSign",
                "messages.threadLabel", "detail.documents", "create.options",
                "consent.textHeading", "me.serial", "detail.pages", "signer.stepDocuments",
                "enrol.subConsents", "caReason.unknown"}


def _texts(lang: str) -> dict[str, str]:
    data = json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def _html_keys(text: str) -> set[str]:
    keys = set(re.findall(r'data-i18n="([^"]+)"', text))
    for attr in re.findall(r'data-i18n-attr="([^"]+)"', text):
        keys |= {pair.split(":", 1)[1].strip() for pair in attr.split(";") if ":" in pair}
    return keys


def _code(text: str) -> str:
    """JS without its comments (a comment may show an example call)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"^\s*//.*$", "", text, flags=re.M)


def _js_literal_keys(text: str) -> set[str]:
    text = _code(text)
    keys = set(re.findall(r'(?<![\w.$])t\(\s*"([^"]+)"', text))
    keys |= set(re.findall(r'"data-i18n":\s*"([^"]+)"', text))
    return keys


def _js_dynamic_prefixes(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w.$])t\(\s*`([^`$]*)\$\{", _code(text)))


def _api_error_codes() -> set[str]:
    section = API.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([A-Z][A-Z_]+)`", section))


def _api_enum(field: str, first: str) -> list[str]:
    """A quoted "a"|"b"|... enum from API.md that starts with `first`."""
    match = re.search(rf'"{field}":\s*("{first}"(?:\|\s*"[a-z-]+")+)', API)
    assert match, f"API.md has no {field} enum starting with {first}"
    return re.findall(r'"([a-z-]+)"', match.group(1))


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    en, fr = _texts("en"), _texts("fr")
    assert sorted(set(en) - set(fr)) == [], "keys missing in fr.json"
    assert sorted(set(fr) - set(en)) == [], "keys missing in en.json"
    for key in en:
        assert en[key].strip() and fr[key].strip(), f"{key} is empty"
        assert _placeholders(en[key]) == _placeholders(fr[key]), f"{key}: placeholders differ"


def test_french_is_translated() -> None:
    en, fr = _texts("en"), _texts("fr")
    same = sorted(k for k in en if en[k] == fr[k] and k not in SAME_IN_BOTH
                  and not k.startswith("level."))
    assert same == [], f"left in English in fr.json: {same}"


def test_every_key_used_by_the_pages_exists() -> None:
    en = _texts("en")
    used: set[str] = set()
    for page in PAGES:
        used |= _html_keys(page.read_text())
    for script in SCRIPTS:
        used |= _js_literal_keys(script.read_text())
    assert len(used) > 150, "the key extraction found too little: is the regex still right?"
    missing = sorted(k for k in used if k not in en)
    assert missing == [], f"used but not in i18n/en.json: {missing}"


def test_runtime_keys_come_only_from_known_families() -> None:
    for script in SCRIPTS:
        for prefix in _js_dynamic_prefixes(script.read_text()):
            assert prefix.startswith(DYNAMIC_PREFIXES), f"{script.name}: t(`{prefix}${{...}}`)"


def test_every_portal_error_code_has_a_sentence() -> None:
    en = _texts("en")
    codes = _api_error_codes()
    assert {"LINK_INVALID", "LINK_EXPIRED", "ALREADY_ACCEPTED", "OTP_REPLAYED"} <= codes
    missing = sorted(c for c in codes if f"error.{c}" not in en)
    assert missing == [], f"API.md error codes without a text: {missing}"


def test_every_agent_error_code_has_a_sentence() -> None:
    en = _texts("en")
    codes = {code.name for code in ErrorCode}
    client = (ROOT / "agent" / "web" / "qsign.js").read_text()
    codes |= set(re.findall(r'new QsignError\("([A-Z_]+)"', client))
    assert {"INVALID_PIN", "PIN_BLOCKED", "INVALID_OTP", "OTP_THROTTLED", "TOKEN_REMOVED",
            "CONNECT_FAILED"} <= codes
    missing = sorted(c for c in codes if f"agentError.{c}" not in en)
    assert missing == [], f"agent error codes without a text: {missing}"
    assert "{attemptsLeft}" in en["agentError.INVALID_PIN"]


@pytest.mark.parametrize(("family", "field", "first"), [
    ("status.transaction", "status", "open"),
    ("status.signer", "status", "waiting"),
    ("status.certificate", "status", "valid"),
])
def test_every_status_has_a_text(family: str, field: str, first: str) -> None:
    en = _texts("en")
    values = _api_enum(field, first)
    assert len(values) >= 3
    missing = [v for v in values if f"{family}.{v}" not in en]
    assert missing == [], f"{family}: {missing}"


def test_the_signer_page_has_a_section_for_every_step() -> None:
    steps = _api_enum("step", "consent")
    html = SIGNER_HTML
    script = "\n".join(path.read_text() for path in sorted(WEB.glob("signer*.js")))
    for step in steps:
        assert f'id="step-{step}"' in html, f"signer.html has no section for step {step}"
        assert f'"{step}"' in script, f"signer.js does not know step {step}"


class _Controls(HTMLParser):
    """Form controls, labels and buttons of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[tuple[dict[str, str | None], bool]] = []
        self.label_for: set[str] = set()
        self.ids: list[str] = []
        self.buttons: list[dict[str, str | None]] = []
        self.fake_buttons: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append((a, self._in_label > 0))
        elif tag == "button":
            self.buttons.append(a)
        elif tag == "img":
            self.images.append(a)
        if a.get("role") == "button" or (tag in ("a", "div", "span") and "onclick" in a):
            self.fake_buttons.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_form_control_has_a_label_and_buttons_are_buttons(page: Page) -> None:
    parsed = _Controls()
    parsed.feed(page.read_text())
    assert parsed.controls or page.name == "index.html"
    for attrs, wrapped in parsed.controls:
        labelled = (wrapped or attrs.get("id") in parsed.label_for
                    or attrs.get("aria-label") or attrs.get("aria-labelledby")
                    or "aria-label:" in (attrs.get("data-i18n-attr") or ""))
        assert labelled, f"{page.name}: control without a label: {attrs}"
    for button in parsed.buttons:
        assert button.get("type") in ("button", "submit"), f"{page.name}: {button}"
    assert parsed.fake_buttons == [], f"{page.name}: clickable non-buttons"
    duplicates = {i for i in parsed.ids if parsed.ids.count(i) > 1}
    assert duplicates == set(), f"{page.name}: duplicate ids {duplicates}"
    for image in parsed.images:
        assert image.get("alt") is not None, f"{page.name}: image without alt"
    assert re.search(r'<html lang="[a-z]{2}">', page.read_text())
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in page.read_text()


def test_every_page_extends_the_one_layout_without_inline_script_or_style() -> None:
    """The head and site header exist once (base.html); the CSP allows no inline script
    or style (portal/routes/middleware.py), so no page may carry one."""
    templates = ROOT / "portal" / "templates"
    assert sorted(p.name for p in templates.glob("*.html")) == sorted(
        ["base.html", *(page.name for page in PAGES)])
    for page in PAGES:
        text = (templates / page.name).read_text()
        assert text.startswith('{% extends "base.html" %}'), page.name
        assert "<head" not in text and "<header" not in text, page.name
        assert page.html.count("<head>") == 1 and page.html.count('<header class="site">') == 1
        assert re.findall(r"<script(?![^>]*\bsrc=)", page.html) == [], page.name
        assert "<style" not in page.html and " style=" not in page.html, page.name


def test_the_layout_escapes_what_it_is_given() -> None:
    html = _TEMPLATES.get_template("base.html").render(
        lang="en", title_key="k", title='<script>alert("x")</script>', script="x.js")
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html


def test_the_pin_field_is_what_a_pin_field_should_be() -> None:
    parsed = _Controls()
    parsed.feed(SIGNER_HTML)
    pin = next(a for a, _ in parsed.controls if a.get("id") == "pin")
    assert pin.get("type") == "password"
    assert pin.get("inputmode") == "numeric"
    assert pin.get("autocomplete") == "off"
    assert pin.get("pattern") == "[0-9]{4,8}"
    assert (pin.get("minlength"), pin.get("maxlength")) == ("4", "8")
    script = (WEB / "signer.js").read_text()
    # The PIN goes to the agent's authorize only; no portal call carries it.
    assert re.search(r'let pin = \$\("pin"\)\.value;\s*\$\("pin"\)\.value = "";', script)
    for call in re.findall(r"api\([^;]*?\)", script, flags=re.S):
        assert "pin" not in call.lower(), f"a portal call mentions the PIN: {call}"
    assert "console." not in script and "localStorage.setItem(\"pin" not in script


def test_nothing_is_loaded_from_outside_and_every_local_asset_exists() -> None:
    for path in [*PAGES, *SCRIPTS, WEB / "app.css"]:
        text = path.read_text()
        for url in re.findall(r"(?:https?:)?//[\w.-]+[:/][^\s\"'`)]*", text):
            assert url.startswith("http://127.0.0.1:"), f"{path.name} loads {url}"
        for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', text):
            assert (WEB / asset).is_file(), f"{path.name}: /static/{asset} is missing"
        for module in re.findall(r'from "/static/([^"]+)"', text):
            assert (WEB / module).is_file(), f"{path.name}: /static/{module} is missing"


# First-time signer (issue 7) ------------------------------------------------------------

# enrolment.js and the token steps it imports (enrolment-token.js), read as one.
ENROLMENT = "\n".join((WEB / name).read_text() for name in ("enrolment.js",
                                                            "enrolment-token.js"))
CAPTURE = (WEB / "capture.js").read_text()


def _api_enrolment_section() -> str:
    return API.split("## First-time signer: enrolment", 1)[1].split("\n## ", 1)[0]


def test_every_enrolment_step_has_a_section_and_a_handler() -> None:
    section = _api_enrolment_section()
    match = re.search(r'"step":\s*((?:"[a-z-]+"\s*\|?\s*)+)', section)
    assert match, "API.md: no EnrolmentView step enum"
    steps = [s for s in re.findall(r'"([a-z-]+)"', match.group(1)) if s != "done"]
    assert "personal-data" in steps and "certificate" in steps and len(steps) == 7
    html = SIGNER_HTML
    for step in steps:
        assert f'id="enrol-{step}"' in html, f"signer.html has no sub-step {step}"
        assert f'data-sub="{step}"' in html, f"the sub-step list lacks {step}"
        assert f'"{step}"' in ENROLMENT, f"enrolment.js does not know {step}"
    assert 'id="step-enrolment"' in html and 'data-step="enrolment"' in html
    # Every portal call of the contract is made by the page.
    for call in re.findall(r"^- `([a-z-]+)` ", section, flags=re.M):
        assert f'post("{call}"' in ENROLMENT, f"enrolment.js never calls enrolment/{call}"


def test_every_enrolment_error_has_a_sentence() -> None:
    en = _texts("en")
    codes = set(re.findall(r"`([A-Z][A-Z_]+)` \d{3}", _api_enrolment_section()))
    assert {"IDENTITY_NOT_VERIFIED", "NAME_NOT_ON_DOCUMENT", "KEY_MISMATCH"} <= codes
    codes |= {"IDENTITY_MISMATCH"}  # portal/enrolment.py answers it at identity-confirm
    codes |= set(IDENTITY_STATUS)   # the identity service, mounted at /api/identity
    missing = sorted(c for c in codes if f"error.{c}" not in en)
    assert missing == [], f"identity / enrolment codes without a text: {missing}"


def test_every_ca_refusal_and_challenge_has_a_sentence() -> None:
    en = _texts("en")
    service = (ROOT / "ca" / "service.py").read_text()
    block = service.split("_REFUSALS = sorted({", 1)[1].split("})", 1)[0]
    refusals = set(re.findall(r'"([a-z_]+)"', block))
    assert {"attestation_untrusted", "evidence_untrusted", "evidence_reused"} <= refusals
    missing = sorted(r for r in refusals if f"caReason.{r}" not in en)
    assert missing == [], f"CA refusals without a text: {missing}"
    missing = sorted(a for a in CHALLENGE_ACTIONS if f"challenge.{a}" not in en)
    assert missing == [], f"liveness challenges without a text: {missing}"
    assert "{count}" in en["challenge.show-fingers"]
    fields = {f for module in (ROOT / "portal" / "identity").glob("*.py")
              for f in re.findall(r'field="([a-z_]+)"', module.read_text())}
    assert {"document_number", "specimen"} <= fields
    assert sorted(f for f in fields if f"capture.mismatchField.{f}" not in en) == []
    for why in re.findall(r'"(denied|unavailable|unsupported)"', CAPTURE):
        assert f"capture.noCamera.{why}" in en


def test_the_enrolment_pin_fields_and_the_pins_never_reach_the_portal() -> None:
    parsed = _Controls()
    parsed.feed(SIGNER_HTML)
    for name in ("old-pin", "new-pin", "new-pin-2", "enrol-pin-input"):
        field = next(a for a, _ in parsed.controls if a.get("id") == name)
        assert field.get("type") == "password", name
        assert field.get("inputmode") == "numeric", name
        assert field.get("autocomplete") == "off", name
        assert field.get("pattern") == "[0-9]{4,8}", name
        assert (field.get("minlength"), field.get("maxlength")) == ("4", "8"), name
    puk = next(a for a, _ in parsed.controls if a.get("id") == "puk")
    assert (puk.get("type"), puk.get("inputmode"), puk.get("autocomplete"),
            puk.get("pattern")) == ("password", "numeric", "off", "[0-9]{6,8}")
    code = _code(ENROLMENT)
    # The fields are emptied before the agent is called, in the same synchronous run.
    assert re.search(r"let pin = oldField\.value;\s*let newPin = newField\.value;\s*"
                     r"for \(const field of fields\) field\.value = \"\";", code)
    assert re.search(r'let pin = needsPin \? pinField\.value : null;\s*pinField\.value = "";',
                     code)
    for call in re.findall(r"post\([^;]*?\)", code, flags=re.S) + \
            re.findall(r"api\([^;]*?\)", code, flags=re.S):
        assert "pin" not in call.lower().replace("pin-set", ""), f"a portal call has a PIN: {call}"
    for script in (ENROLMENT, CAPTURE):
        assert "console." not in script and "localStorage" not in script
        assert "sessionStorage" not in script
    # The 4-8 digit rule the page checks is the agent's own.
    assert 'PIN_RULE = /^[0-9]{4,8}$/' in code
    assert '"pattern": "^[0-9]{4,8}$"' in (ROOT / "agent" / "protocol" / "jsonrpc.py").read_text()


def test_the_pages_ask_identity_evidence_only_from_the_portal() -> None:
    """Evidence for a key comes from the portal's enrolment/evidence (which checks the
    step and the signer); the pages never call the identity service's own route."""
    for script in (CAPTURE, ENROLMENT, (WEB / "identity.js").read_text()):
        code = _code(script)
        assert "/evidence" not in code and "sessions/${" not in code.replace(
            "/api/identity/sessions/${path}", "")
    assert 'post("evidence", { publicKey: run.publicKey, accept: true })' in ENROLMENT
