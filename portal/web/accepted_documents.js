// accepted_documents.js: the identity documents a first-time signer may present, shown
// at the enrolment's identity step before any capture (GET /api/s/{invite}/identity-
// documents: the workspace's own list, or the identity service's). A kind no state
// accepts is taken out of the choice; the identity step refuses the rest by name.

import { api, el } from "/static/api.js";
import { has, language, onLanguageChange, t } from "/static/i18n.js";

const box = document.getElementById("accepted-documents");
let listing = null;

function stateName(state) {
  try {
    if (state.alpha2) return new Intl.DisplayNames([language()], { type: "region" }).of(state.alpha2);
  } catch (_) { /* an engine without DisplayNames */ }
  return state.name;
}

function kinds(state) {
  return state.documents.map((k) => t(k === "passport" ? "enrol.documentPassportShort" : "enrol.documentIdCardShort")).join(", ");
}

function render() {
  if (!listing || !has("accepted.restricted")) return;
  const states = [...listing.accepted].sort((a, b) => stateName(a).localeCompare(stateName(b), language()));
  const items = states.map((s) => el("li", { "data-state": s.state, text: `${stateName(s)}: ${kinds(s)}` }));
  const list = el("ul", { class: "small" }, ...items);
  box.replaceChildren(listing.restricted
    ? el("div", {}, el("p", { text: t("accepted.restricted") }), list)
    : el("details", {}, el("summary", { text: t("accepted.any", { count: states.length }) }), list));
  for (const kind of ["id-card", "passport"]) {
    const radio = document.querySelector(`input[name="document"][value="${kind}"]`);
    if (!radio) continue;
    const usable = states.some((s) => s.documents.includes(kind));
    radio.disabled = !usable;
    if (!usable && radio.checked) {
      radio.checked = false;
      const other = document.querySelector('input[name="document"]:not(:disabled)');
      if (other) other.checked = true;
    }
  }
  box.hidden = false;
}

async function load() {
  const invite = location.pathname.split("/")[2];
  if (!box || !invite) return;
  try {
    listing = await api("GET", `/api/s/${invite}/identity-documents`);
  } catch (_) {
    return; // the signer's page says what is wrong with the link
  }
  render();
}

onLanguageChange(render);
load();
