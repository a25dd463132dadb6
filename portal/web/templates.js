// templates.js: a workspace's templates (/templates?ws=<id>) over
// /api/v1/workspaces/{ws}/templates (portal/API.md "Templates", "Bulk send"): the list,
// saving a transaction as a template (or making one: template-new.js), starting a transaction from one with its roles
// filled, and a bulk send from a CSV file with its progress and each line's result.

import { e164, el, explain, say } from "/static/api.js";
import { enterWorkspace, pageLanguage } from "/static/credential.js";
import { formatDate, t } from "/static/i18n.js";
import { notice } from "/static/notice.js";
import { writes } from "/static/roles.js";
import { relabelNewTemplate, wireNewTemplate } from "/static/template-new.js";

const $ = (id) => document.getElementById(id);
const PROGRESS_EVERY = 1000; // ms between looks at a bulk send's progress
let call = null;
let workspace = "default";
let templates = [];
let chosen = null;
let watching = null;
let readOnly = true; // a viewer: the list only (portal/API.md "Workspaces and roles")

function base() {
  return `/api/v1/workspaces/${encodeURIComponent(workspace)}`;
}

function orderName(parameters) {
  const names = { parallel: t("templates.order_parallel"),
    sequential: t("templates.order_sequential"), groups: t("templates.order_groups") };
  return names[parameters.signingOrder || "sequential"] || parameters.signingOrder;
}

function rowState(state) {
  const names = { pending: t("templates.row_pending"), done: t("templates.row_done"),
    failed: t("templates.row_failed") };
  return names[state] || state;
}

function renderList() {
  $("list-empty").hidden = templates.length > 0;
  $("template-list").replaceChildren(...templates.map((tpl) => el("li", { "data-template": tpl.id },
    el("div", { class: "row" },
      el("strong", { text: tpl.name }),
      el("span", { class: "small muted", text: formatDate(tpl.updatedAt) })),
    el("p", { class: "small", text: t("templates.summary", {
      roles: tpl.roles.map((r) => r.role).join(", "), order: orderName(tpl.parameters),
      level: tpl.parameters.level || "B-LT", documents: tpl.documents.length }) }),
    readOnly ? "" : el("div", { class: "actions" }, el("button", {
      type: "button", class: "primary", text: t("templates.use"),
      onclick: () => choose(tpl),
    })))));
}

function roleFields(role, index) {
  const id = (what) => `role-${index}-${what}`;
  return el("fieldset", { "data-role": role.role },
    el("legend", { text: role.group ? t("templates.roleGroup", { role: role.role, group: role.group }) : role.role }),
    el("label", { for: id("email"), text: t("templates.email") }),
    el("input", { id: id("email"), type: "email", maxlength: "254", required: "", autocomplete: "off" }),
    el("label", { for: id("name"), text: t("templates.signerName") }),
    el("input", { id: id("name"), type: "text", maxlength: "200" }),
    el("label", { for: id("phone"), text: t("templates.phone") }),
    el("input", { id: id("phone"), type: "tel", maxlength: "20" }));
}

function fillEditor(tpl) {
  $("edit").hidden = false;
  $("edit-name").value = tpl.name;
  $("edit-title").value = tpl.title;
  $("edit-level").value = tpl.parameters.level || "B-LT";
  $("edit-reminders").value = tpl.parameters.reminderDays || "";
  $("edit-message").value = tpl.parameters.message || "";
}

async function saveEdit(event) {
  event.preventDefault();
  const days = Number($("edit-reminders").value);
  const parameters = { ...chosen.parameters, level: $("edit-level").value,
    message: $("edit-message").value.trim() };
  if (days) parameters.reminderDays = days;
  else delete parameters.reminderDays;
  $("edit-submit").disabled = true;
  try {
    const tpl = await call("PATCH", `${base()}/templates/${encodeURIComponent(chosen.id)}`, {
      revision: chosen.revision, name: $("edit-name").value.trim(),
      title: $("edit-title").value.trim(), parameters });
    await load();
    choose(templates.find((one) => one.id === tpl.id) || tpl);
    // Said once the editor shows the saved revision: a choice made after "saved" is
    // never overwritten by the re-render.
    notice(t("templates.saved", { name: tpl.name }), "ok");
  } catch (error) {
    notice(explain(error), "error");
  } finally {
    $("edit-submit").disabled = false;
  }
}

function choose(tpl) {
  chosen = tpl;
  fillEditor(tpl);
  $("use").hidden = false;
  $("use-title").value = tpl.title;
  $("use-about").textContent = t("templates.chosen", { name: tpl.name });
  $("roles").replaceChildren(...tpl.roles.map(roleFields));
  const columns = tpl.roles.flatMap((r) => [`${r.role}.email`, `${r.role}.name`, `${r.role}.phone`]);
  $("csv-hint").textContent = t("templates.csvColumns", { columns: columns.join(",") });
  $("use-status").hidden = true;
  $("csv-errors").hidden = true;
  $("use").scrollIntoView({ block: "start" });
}

async function load() {
  templates = (await call("GET", `${base()}/templates`)).templates;
  renderList();
  $("save-form").closest("section").hidden = readOnly;
  $("new-card").hidden = readOnly;
  $("templates-page").hidden = false;
}

async function save(event) {
  event.preventDefault();
  const name = $("save-name").value.trim();
  const tx = $("save-tx").value.trim();
  if (!name || !tx) {
    notice(t("templates.fillIn"), "error");
    return;
  }
  $("save-submit").disabled = true;
  try {
    const tpl = await call("POST", `${base()}/templates`, { name, fromTransaction: tx });
    $("save-form").reset();
    await load();
    notice(t("templates.saved", { name: tpl.name }), "ok");
  } catch (error) {
    notice(explain(error), "error");
  } finally {
    $("save-submit").disabled = false;
  }
}

/** The requester the signers see, when typed (else the signed-in user's account). */
function requester() {
  const name = $("req-name").value.trim();
  const email = $("req-email").value.trim();
  return name && email ? { requester: { name, email } } : {};
}

async function start(event) {
  event.preventDefault();
  const signers = [];
  for (const [index, role] of chosen.roles.entries()) {
    const email = $(`role-${index}-email`).value.trim();
    const name = $(`role-${index}-name`).value.trim();
    const typed = $(`role-${index}-phone`).value.trim();
    const phone = typed ? e164(typed) : "";
    if (!email || phone === null) {
      say($("use-status"), t(email ? "templates.badPhone" : "templates.fillIn"), "error");
      return;
    }
    signers.push({ role: role.role, email, ...(name ? { name } : {}), ...(phone ? { phone } : {}) });
  }
  $("use-submit").disabled = true;
  try {
    const tx = await call("POST", `${base()}/templates/${encodeURIComponent(chosen.id)}/transactions`, {
      title: $("use-title").value.trim() || chosen.title, signers, ...requester() });
    say($("use-status"), t("templates.started", { id: tx.id }), "ok");
  } catch (error) {
    say($("use-status"), explain(error), "error");
  } finally {
    $("use-submit").disabled = false;
  }
}

function renderProgress(bulk) {
  $("progress").hidden = false;
  $("progress-bar").max = bulk.total;
  $("progress-bar").value = bulk.done + bulk.failed;
  $("progress-text").textContent = t("templates.progress", {
    done: bulk.done, failed: bulk.failed, total: bulk.total });
  $("rows").replaceChildren(...bulk.rows.map((row) => el("tr", { "data-line": String(row.line) },
    el("td", { text: String(row.line) }),
    el("td", { text: rowState(row.state) }),
    el("td", { class: "mono", text: row.transactionId || row.error || row.emails.join(", ") }))));
}

async function watch(id) {
  clearTimeout(watching);
  try {
    const bulk = await call("GET", `${base()}/bulk/${encodeURIComponent(id)}`);
    renderProgress(bulk);
    if (bulk.pending > 0) watching = setTimeout(() => watch(id), PROGRESS_EVERY);
  } catch (error) {
    notice(explain(error), "error");
  }
}

async function bulkSend(event) {
  event.preventDefault();
  const file = $("csv-file").files[0];
  if (!file) {
    notice(t("templates.csvMissing"), "error");
    return;
  }
  $("bulk-submit").disabled = true;
  $("csv-errors").hidden = true;
  try {
    const bulk = await call("POST", `${base()}/templates/${encodeURIComponent(chosen.id)}/bulk`,
      { csv: await file.text(), ...requester() });
    renderProgress(bulk);
    watch(bulk.id);
  } catch (error) {
    notice(explain(error), "error");
    const problems = (error.body && error.body.errors) || [];
    $("csv-errors").replaceChildren(...problems.map((p) => el("li", {
      "data-line": String(p.line), "data-column": p.column,
      text: t(p.column ? "templates.csvProblem" : "templates.csvLineProblem",
        { line: p.line, column: p.column, message: p.message }) })));
    $("csv-errors").hidden = problems.length === 0;
  } finally {
    $("bulk-submit").disabled = false;
  }
}

async function main() {
  await pageLanguage(() => { relabelNewTemplate(); if (templates.length) renderList(); });
  wireNewTemplate({ notice, post: (body) => call("POST", `${base()}/templates`, body),
    done: async (tpl) => { await load(); notice(t("templates.saved", { name: tpl.name }), "ok"); } });
  $("save-form").addEventListener("submit", save);
  $("use-form").addEventListener("submit", start);
  $("edit-form").addEventListener("submit", saveEdit);
  $("bulk-form").addEventListener("submit", bulkSend);
  await enterWorkspace(async (caller, ws) => {
    call = caller;
    workspace = ws;
    // The caller's role there, a session's or an API token's (GET .../workspaces/{ws}).
    const { role } = await call("GET", base());
    readOnly = !writes(role);
    await load();
  }, { notice });
  document.body.dataset.ready = "true";
}

main();
