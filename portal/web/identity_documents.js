// identity_documents.js: a workspace's accepted identity documents
// (/workspace/{ws}/identity-documents, GET|PUT /api/v1/workspaces/{ws}/identity-documents):
// per issuing state, the kinds its first-time signers may present, within what the
// identity service supports. Members read it; admins and owners change it.

import { el, explain, say } from "/static/api.js";
import { enter } from "/static/credential.js";
import { bindSwitcher, chooseLanguage, language, onLanguageChange, setLanguage, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
const KINDS = ["id-card", "passport"];
const workspace = decodeURIComponent(location.pathname.split("/")[2] || "");
const path = `/api/v1/workspaces/${encodeURIComponent(workspace)}/identity-documents`;
let call = null;
let listing = null; // {restricted, accepted, supported}

function notice(text, kind = "info") {
  say($("notice"), text, kind);
}

function stateName(state) {
  try {
    if (state.alpha2) return new Intl.DisplayNames([language()], { type: "region" }).of(state.alpha2);
  } catch (_) { /* an engine without DisplayNames */ }
  return state.name;
}

function render() {
  if (!listing) return;
  const chosen = new Map(listing.accepted.map((s) => [s.state, new Set(s.documents)]));
  const states = [...listing.supported].sort((a, b) => stateName(a).localeCompare(stateName(b), language()));
  $("documents-all").checked = !listing.restricted;
  $("documents").tBodies[0].replaceChildren(...states.map((s) => el("tr", { "data-state": s.state },
    el("th", { scope: "row", text: `${stateName(s)} (${s.state})` }),
    ...KINDS.map((kind) => el("td", { "data-label": t(kind === "passport" ? "enrol.documentPassportShort" : "enrol.documentIdCardShort") },
      s.documents.includes(kind)
        ? el("input", { type: "checkbox", "data-kind": kind, "aria-label": `${stateName(s)}: ${kind}`,
          checked: !listing.restricted || (chosen.get(s.state) || new Set()).has(kind),
          disabled: !listing.restricted })
        : el("span", { class: "muted", text: "—" }))))));
  $("choice").hidden = false;
}

function chosenList() {
  const accepted = {};
  for (const box of $("documents").querySelectorAll("input[type=checkbox]:checked")) {
    const state = box.closest("tr").dataset.state;
    (accepted[state] = accepted[state] || []).push(box.dataset.kind);
  }
  return accepted;
}

async function save(event) {
  event.preventDefault();
  const accepted = $("documents-all").checked ? null : chosenList();
  $("documents-save").disabled = true;
  try {
    listing = await call("PUT", path, { accepted });
    notice(t("idDocs.saved"), "ok");
    render();
  } catch (error) {
    notice(explain(error), "error");
  } finally {
    $("documents-save").disabled = false;
  }
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  onLanguageChange(render);
  $("documents-all").addEventListener("change", () => {
    listing = { ...listing, restricted: !$("documents-all").checked };
    render();
  });
  $("documents-form").addEventListener("submit", save);
  await enter(async (caller_) => {
    call = caller_;
    listing = await call("GET", path);
    render();
  }, { notice });
  document.body.dataset.ready = "true";
}

main();
