// requester.js: the requester's page (/requester): the bearer token (kept in this
// tab's sessionStorage), a new transaction, the list with each signer's status, and
// one transaction opened: statuses, current PDFs, the messaging thread.

import { api, blobToBase64, e164, el, explain, saveBlob, say } from "/static/api.js";
import {
  bindSwitcher, chooseLanguage, formatDate, formatSize, onLanguageChange, setLanguage, t,
} from "/static/i18n.js";
import { signedIn } from "/static/credential.js";
import { renderThread, typedMessage } from "/static/messages.js";
import { writes } from "/static/roles.js";
import { bindOrder, groupField, orderParameters, orderProblem, rowValues } from "/static/signing-order.js";
import { cancelControl, signerControls } from "/static/transaction_actions.js";
import { showReport } from "/static/validation.js";

const $ = (id) => document.getElementById(id);
export const TOKEN_KEY = "qsign.requesterToken";
const PROFILE_KEY = "qsign.requesterProfile";
const MAX_DOCUMENTS = 20;
const MAX_BYTES = 20 * 1024 * 1024;

let token = null;
let transactions = [];
let opened = null;
let signerSeq = 0;

function notice(text, kind = "info") {
  say($("notice"), text, kind);
}

function readToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
}

// A signed-in session (issue 15) works in one workspace (?ws=, else its first): the
// same calls under /api/v1/workspaces/<ws>/transactions, with its CSRF token.
let session = null;
let workspace = null;
// The caller's role where the list is read (its `role`: a session's or an API token's).
let role = null;

/** A viewer, or a role not told, gets no writing control (roles.js `writes`). */
function readOnly() {
  return !writes(role);
}

function call(method, path, options = {}) {
  if (session) {
    const scoped = path.replace(/^\/api\/v1\/transactions/,
      `/api/v1/workspaces/${encodeURIComponent(workspace)}/transactions`);
    return api(method, scoped, { ...options, csrf: session.csrf });
  }
  return api(method, path, { ...options, token });
}

// ---------------------------------------------------------------------------- token

async function useToken(value) {
  token = value;
  try {
    await refresh();
  } catch (error) {
    token = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
    showSignedIn(false);
    notice(explain(error), "error");
    return;
  }
  if (value) {
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch (_) { /* private mode */ }
  }
  showSignedIn(true);
  // The mails link a transaction as /requester?tx=<id>: open it once signed in.
  const linked = new URLSearchParams(location.search).get("tx");
  if (linked && !opened) await openTransaction(linked);
}

function showSignedIn(yes) {
  $("token-form").hidden = yes;
  $("token-ok").hidden = !yes;
  $("create").hidden = !yes || readOnly();
  $("list").hidden = !yes;
  if (!yes) $("detail").hidden = true;
}

// ---------------------------------------------------------------------------- create

function addSigner(values = {}) {
  const n = ++signerSeq;
  const id = (field) => `signer-${n}-${field}`;
  const row = el("div", { class: "signer-row", "data-signer": String(n) },
    el("h3", { class: "signer-heading" }),
    el("div", { class: "grid two" },
      el("div", {}, el("label", { for: id("name"), "data-i18n": "create.signerName", text: t("create.signerName") }),
        el("input", { id: id("name"), type: "text", maxlength: "200", autocomplete: "off", "data-field": "name" })),
      el("div", {}, el("label", { for: id("email"), "data-i18n": "create.signerEmail", text: t("create.signerEmail") }),
        el("input", { id: id("email"), type: "email", maxlength: "254", autocomplete: "off", required: true, "data-field": "email" })),
      el("div", {}, el("label", { for: id("phone"), "data-i18n": "create.signerPhone", text: t("create.signerPhone") }),
        el("input", { id: id("phone"), type: "tel", maxlength: "20", autocomplete: "off", placeholder: "+33612345678", "data-field": "phone",
                      "aria-describedby": "phone-hint" })),
      el("div", {}, el("label", { for: id("lang"), "data-i18n": "create.signerLang", text: t("create.signerLang") }),
        el("select", { id: id("lang"), "data-field": "lang" },
          el("option", { value: "", "data-i18n": "create.langAsk", text: t("create.langAsk") }),
          el("option", { value: "en", text: "English" }),
          el("option", { value: "fr", text: "Français" }))),
      groupField(id)),
    el("div", { class: "actions" },
      el("button", { type: "button", "data-move": "-1" }),
      el("button", { type: "button", "data-move": "1" }),
      el("button", { type: "button", class: "danger", "data-remove": "1" })));
  for (const [field, value] of Object.entries(values)) {
    const input = row.querySelector(`[data-field="${field}"]`);
    if (input) input.value = value;
  }
  row.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.remove) {
      if ($("signers").children.length > 1) row.remove();
    } else if (button.dataset.move === "-1" && row.previousElementSibling) {
      row.previousElementSibling.before(row);
    } else if (button.dataset.move === "1" && row.nextElementSibling) {
      row.nextElementSibling.after(row);
    }
    labelSigners();
    button.focus();
  });
  $("signers").append(row);
  labelSigners();
  return row;
}

/** Headings and button names that say which signer they are about (order = position). */
function labelSigners() {
  const rows = [...$("signers").children];
  rows.forEach((row, index) => {
    const number = index + 1;
    row.querySelector(".signer-heading").textContent = t("create.signerHeading", { n: number });
    const [up, down, remove] = row.querySelectorAll(".actions button");
    up.textContent = t("create.moveUp");
    up.setAttribute("aria-label", t("create.moveUpLabel", { n: number }));
    up.disabled = index === 0;
    down.textContent = t("create.moveDown");
    down.setAttribute("aria-label", t("create.moveDownLabel", { n: number }));
    down.disabled = index === rows.length - 1;
    remove.textContent = t("create.remove");
    remove.setAttribute("aria-label", t("create.removeLabel", { n: number }));
    remove.disabled = rows.length === 1;
  });
  for (const label of $("signers").querySelectorAll("[data-i18n]")) label.textContent = t(label.dataset.i18n);
}

function showFiles() {
  const files = [...$("documents").files];
  $("file-list").replaceChildren(...files.map((f) => el("li", { text: `${f.name} (${formatSize(f.size)})` })));
}

async function create(event) {
  event.preventDefault();
  const status = $("create-status");
  const problem = validate();
  if (problem) {
    say(status, problem, "error");
    return;
  }
  const button = $("create-submit");
  button.disabled = true;
  say(status, t("create.sending"));
  const files = [...$("documents").files];
  try {
    const documents = [];
    for (const file of files) documents.push({ name: file.name, content: await blobToBase64(file) });
    const order = $("order").value;
    const signers = [...$("signers").children].map((row) => rowValues(row, order));
    const body = {
      title: $("title").value.trim(),
      requester: { name: $("req-name").value.trim(), email: $("req-email").value.trim() },
      documents, signers,
      ...orderParameters(order, $("reminders").value), expiresInDays: Number($("expires").value),
      qualified: $("qualified").checked, messaging: $("messaging").checked, level: $("level").value,
    };
    try { localStorage.setItem(PROFILE_KEY, JSON.stringify(body.requester)); } catch (_) { /* ignore */ }
    const created = await call("POST", "/api/v1/transactions", { body });
    say(status, t("create.created", { title: created.title }), "ok");
    $("title").value = "";
    $("documents").value = "";
    showFiles();
    $("signers").replaceChildren();
    addSigner();
    await refresh();
    openTransaction(created.id);
  } catch (error) {
    say(status, uploadError(error, files), "error");
  } finally {
    button.disabled = false;
  }
}

/** A refused document named, with why (the API's `document` index and `reason`). */
function uploadError(error, files) {
  const body = error.body || {};
  const file = Number.isInteger(body.document) ? files[body.document] : null;
  if (error.code !== "PDF_INVALID" || !file) return explain(error);
  const reasons = { empty: "create.pdfEmpty", "not-pdf": "create.pdfNotPdf", pages: "create.pdfPages" };
  return t("create.pdfInvalid", { name: file.name, reason: t(reasons[body.reason] || "create.pdfUnreadable") });
}

function validate() {
  if (!$("title").value.trim()) return t("create.needTitle");
  if (!$("req-name").value.trim() || !$("req-email").validity.valid || !$("req-email").value) return t("create.needRequester");
  const files = [...$("documents").files];
  if (files.length === 0) return t("create.needDocuments");
  if (files.length > MAX_DOCUMENTS) return t("create.tooManyDocuments", { max: MAX_DOCUMENTS });
  for (const file of files) {
    if (file.size > MAX_BYTES) return t("create.fileTooLarge", { name: file.name });
  }
  for (const [index, row] of [...$("signers").children].entries()) {
    const email = row.querySelector('[data-field="email"]');
    if (!email.value.trim() || !email.validity.valid) return t("create.needSignerEmail", { n: index + 1 });
    const phone = row.querySelector('[data-field="phone"]').value.trim();
    if (phone && e164(phone) === null) return t("create.badPhone", { n: index + 1 });
  }
  const days = Number($("expires").value);
  if (!Number.isInteger(days) || days < 1 || days > 90) return t("create.badExpiry");
  return orderProblem($("order").value, $("reminders").value, $("signers"));
}

// ---------------------------------------------------------------------------- list

async function refresh() {
  const reply = await call("GET", "/api/v1/transactions");
  transactions = reply.transactions;
  role = reply.role || null;
  renderList();
  if (opened) {
    const again = transactions.find((tx) => tx.id === opened.id);
    if (again) { opened = again; renderDetail(); }
  }
}

function badge(kind, status) {
  return el("span", { class: "badge", "data-status": status, text: t(`status.${kind}.${status}`) });
}

function renderList() {
  $("list-empty").hidden = transactions.length > 0;
  $("transactions").replaceChildren(...transactions.map((tx) => el("li", { "data-transaction": tx.id },
    el("div", { class: "row" },
      el("strong", { text: tx.title }), badge("transaction", tx.status)),
    el("p", { class: "small muted", text: t("list.meta", {
      created: formatDate(tx.createdAt), expires: formatDate(tx.expiresAt), documents: tx.documents.length,
    }) }),
    el("ul", { class: "small" }, ...tx.signers.map((s) => el("li", {},
      `${s.order}. ${s.name || s.email} `, badge("signer", s.status)))),
    el("button", { type: "button", "aria-label": t("list.openLabel", { title: tx.title }),
                   text: t("list.open"), onclick: () => openTransaction(tx.id) }))));
}

// ---------------------------------------------------------------------------- one transaction

async function openTransaction(id) {
  try {
    opened = await call("GET", `/api/v1/transactions/${encodeURIComponent(id)}`);
  } catch (error) {
    notice(explain(error), "error");
    return;
  }
  $("detail").hidden = false;
  renderDetail();
  $("detail").focus();
  await loadMessages();
}

// The transaction's `signingOrder` (portal/API.md `Transaction`) as the detail says it.
const ORDER_NAMES = { parallel: "detail.parallel", sequential: "detail.sequential", groups: "detail.groups" };

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", {}, value)];
}

function renderDetail() {
  const tx = opened;
  $("detail-title").textContent = tx.title;
  $("detail-facts").replaceChildren(
    ...fact(t("detail.status"), badge("transaction", tx.status)),
    ...fact(t("detail.created"), formatDate(tx.createdAt)),
    ...fact(t("detail.expires"), formatDate(tx.expiresAt)),
    ...fact(t("detail.order"), t(ORDER_NAMES[tx.signingOrder] || "detail.sequential")),
    ...fact(t("detail.qualified"), t(tx.qualified ? "common.yes" : "common.no")),
    ...fact(t("detail.level"), tx.level),
    ...fact(t("detail.messaging"), t(tx.messaging ? "common.yes" : "common.no")));
  $("detail-signers").replaceChildren(...tx.signers.map((s) => {
    const item = el("li", { "data-signer": s.id },
      el("div", { class: "row" }, el("strong", { text: `${s.order}. ${s.name || s.email}` }), badge("signer", s.status)),
      el("p", { class: "small muted", text: [s.email, s.phone, s.lang,
        s.group && t("detail.group", { n: s.group })].filter(Boolean).join(" · ") }));
    if (s.signedAt) item.append(el("p", { class: "small", text: t("detail.signedAt", { at: formatDate(s.signedAt) }) }));
    if (s.refusalReason) item.append(el("p", { class: "small", text: t("detail.refusalReason", { reason: s.refusalReason }) }));
    if (!readOnly()) item.append(signerControls(tx, s, call, redraw, $("detail-error")) || "");
    if (s.inviteUrl) {
      const link = new URL(s.inviteUrl, location.origin).href;
      const field = `invite-${s.id}`;
      item.append(el("label", { for: field, class: "small", text: t("detail.inviteLink") }),
        el("input", { id: field, type: "text", readonly: true, value: link, class: "mono small", "data-invite": s.id }),
        el("div", { class: "actions" }, el("button", { type: "button",
          "aria-label": t("detail.copyLinkLabel", { name: s.name || s.email }), text: t("detail.copyLink"),
          onclick: async () => {
            try { await navigator.clipboard.writeText(link); notice(t("detail.copied"), "ok"); }
            catch (_) { $(field).select(); }
          } })));
    }
    return item;
  }));
  $("detail-documents").replaceChildren(...tx.documents.map((d) => el("li", {},
    el("div", { class: "row" },
      el("span", { text: `${d.name} (${formatSize(d.size)}, ${t("detail.pages", { n: d.pages })})` }),
      el("span", { class: "actions" },
        el("button", { type: "button", "aria-label": t("validation.showLabel", { name: d.name }), text: t("validation.show"),
                       onclick: (event) => showValidation(event.currentTarget, d) }),
        el("button", { type: "button", "aria-label": t("detail.downloadLabel", { name: d.name }), text: t("detail.download"),
                       onclick: (event) => downloadDocument(event.currentTarget, d) }))),
    el("div", { class: "validation", hidden: true }))));
  $("detail-messaging").hidden = !tx.messaging;
  $("reply-form").hidden = readOnly();
  $("detail-actions").replaceChildren((!readOnly() && cancelControl(tx, call, redraw, $("detail-error"))) || "");
}

/** After an action on the opened transaction (transaction_actions.js). */
function redraw(tx) {
  opened = tx;
  renderDetail();
  refresh();
}

/** The document's validation report (portal/API.md "Validation"), under its row. */
async function showValidation(button, doc) {
  button.disabled = true;
  try {
    await showReport(button.closest("li").querySelector(".validation"), () => call("GET",
      `/api/v1/transactions/${encodeURIComponent(opened.id)}/documents/${encodeURIComponent(doc.id)}/validation`));
  } catch (error) {
    say($("detail-error"), explain(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function downloadDocument(button, doc) {
  button.disabled = true;
  try {
    const { blob, filename } = await call("GET",
      `/api/v1/transactions/${encodeURIComponent(opened.id)}/documents/${encodeURIComponent(doc.id)}`, { blob: true });
    saveBlob(blob, filename || doc.name);
  } catch (error) {
    say($("detail-error"), explain(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function loadMessages() {
  if (!opened || !opened.messaging) return;
  try {
    const { messages } = await call("GET", `/api/v1/transactions/${encodeURIComponent(opened.id)}/messages`);
    renderThread(messages, "requester");
  } catch (error) {
    say($("detail-error"), explain(error), "error");
  }
}

async function reply(event) {
  event.preventDefault();
  const text = typedMessage("reply-text", "detail-error");
  if (text === null) return;
  $("reply-send").disabled = true;
  try {
    await call("POST", `/api/v1/transactions/${encodeURIComponent(opened.id)}/messages`, { body: { text } });
    $("reply-text").value = "";
    say($("detail-error"), "");
    await loadMessages();
  } catch (error) {
    say($("detail-error"), explain(error), "error");
  } finally {
    $("reply-send").disabled = false;
  }
}

// ---------------------------------------------------------------------------- start

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  onLanguageChange(() => {
    labelSigners();
    renderList();
    if (opened) { renderDetail(); loadMessages(); }
    showFiles();
  });
  try {
    const profile = JSON.parse(localStorage.getItem(PROFILE_KEY) || "null");
    if (profile) { $("req-name").value = profile.name || ""; $("req-email").value = profile.email || ""; }
  } catch (_) { /* nothing remembered */ }
  addSigner();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) { notice(t("token.missing"), "error"); return; }
    notice("");
    useToken(value);
  });
  $("token-forget").addEventListener("click", () => {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
    token = null;
    role = null;
    transactions = [];
    opened = null;
    showSignedIn(false);
    $("token").focus();
  });
  $("add-signer").addEventListener("click", () => addSigner().querySelector("input").focus());
  $("documents").addEventListener("change", showFiles);
  $("create-form").addEventListener("submit", create);
  bindOrder($("order"), $("signers"));
  $("refresh").addEventListener("click", () => refresh().catch((error) => notice(explain(error), "error")));
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; opened = null; $("refresh").focus(); });
  $("reply-form").addEventListener("submit", reply);
  session = await signedIn();
  if (session && session.workspaces.length) {
    const asked = new URLSearchParams(location.search).get("ws");
    workspace = session.workspaces.some((w) => w.id === asked) ? asked : session.workspaces[0].id;
    await useToken(null);
  } else {
    session = null;
    const saved = readToken();
    if (saved) await useToken(saved);
  }
  document.body.dataset.ready = "true";
}

main();
