// console.js: the master console (/console) for the service's administrator, over
// /api/v1/console/... (portal/API.md "Master console"): workspaces and members, accounts,
// usage per month, suspending a workspace or an account, the audit log and its check;
// creating a workspace and inviting into one.

import { el, explain, say } from "/static/api.js";
import { enter } from "/static/credential.js";
import { bindSwitcher, chooseLanguage, formatDate, onLanguageChange, setLanguage, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
let call = null;
let data = null; // {workspaces, users, usage, audit}

function notice(text, kind = "info") {
  say($("notice"), text, kind);
}

function suspendButton(item, path) {
  const suspended = Boolean(item.suspendedAt);
  return el("button", {
    type: "button", class: suspended ? "" : "danger", "data-id": item.id,
    text: t(suspended ? "console.resume" : "console.suspend"),
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await call("POST", `${path}/${encodeURIComponent(item.id)}/suspension`, { suspended: !suspended });
        notice(t(suspended ? "console.resumed" : "console.suspended"), "ok");
        await load();
      } catch (error) {
        notice(explain(error), "error");
        event.target.disabled = false;
      }
    },
  });
}

function status(item) {
  return item.suspendedAt
    ? el("span", { class: "badge", "data-status": "refused", text: t("console.isSuspended") })
    : null;
}

function roleName(role) {
  const names = { owner: t("console.roleOwner"), admin: t("console.roleAdmin"),
    requester: t("console.roleRequester"), viewer: t("console.roleViewer") };
  return names[role] || role;
}

function renderWorkspaces() {
  const list = data.workspaces;
  $("ws-empty").hidden = list.length > 0;
  $("workspaces").replaceChildren(...list.map((w) => el("li", { "data-workspace": w.id },
    el("div", { class: "row" },
      el("strong", { text: w.name }), status(w),
      el("span", { class: "small muted", text: formatDate(w.createdAt, false) })),
    el("p", { class: "small", text: w.members.length
      ? w.members.map((m) => `${m.name || m.email} <${m.email}> — ${roleName(m.role)}`).join(" · ")
      : t("console.noMembers") }),
    el("div", { class: "actions" }, suspendButton(w, "/api/v1/console/workspaces")))));
}

function renderInviteChoices() {
  const chosen = $("invite-ws").value;
  $("invite-ws").replaceChildren(...data.workspaces.map((w) =>
    el("option", { value: w.id, text: w.name, selected: w.id === chosen })));
}

// Creating and inviting go through the workspace routes themselves (the service
// administrator is an owner of every workspace there; they write the audit entries).
function submitting(id, action, success) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await action();
      notice(t(success), "ok");
      await load();
    } catch (error) {
      notice(explain(error), "error");
    }
  });
}

function bindForms() {
  submitting("ws-create", async () => {
    const made = await call("POST", "/api/v1/workspaces", { name: $("ws-name").value.trim() });
    $("ws-name").value = "";
    $("invite-ws").replaceChildren(el("option", { value: made.id, text: made.name, selected: true }));
  }, "console.created");
  submitting("invite-form", async () => {
    await call("POST", `/api/v1/workspaces/${encodeURIComponent($("invite-ws").value)}/invitations`,
      { email: $("invite-email").value.trim(), role: $("invite-role").value });
    $("invite-email").value = "";
  }, "workspace.invited");
}

function renderUsers() {
  const list = data.users;
  $("users-empty").hidden = list.length > 0;
  $("users").replaceChildren(...list.map((u) => el("li", { "data-user": u.id },
    el("div", { class: "row" },
      el("strong", { text: u.email }), el("span", { text: u.name }),
      u.serviceAdmin ? el("span", { class: "badge", text: t("console.admin") }) : null,
      status(u)),
    el("div", { class: "actions" }, suspendButton(u, "/api/v1/console/users")))));
}

function renderUsage() {
  const names = new Map(data.workspaces.map((w) => [w.id, w.name]));
  const rows = data.usage.usage;
  $("usage-empty").hidden = rows.length > 0;
  $("usage").tBodies[0].replaceChildren(...rows.map((r) => el("tr", {},
    el("td", { "data-label": t("console.month"), text: r.month }),
    el("td", { "data-label": t("console.workspace"),
      text: r.workspace === null ? t("console.personalSpace") : names.get(r.workspace) || r.workspace }),
    el("td", { "data-label": t("console.transactions"), text: String(r.transactions) }),
    el("td", { "data-label": t("console.signatures"), text: String(r.signatures) }),
    el("td", { "data-label": t("console.sms"), text: String(r.sms) }))));
}

function renderAudit() {
  const { verify, entries } = data.audit;
  say($("audit-status"), verify.ok
    ? t("console.chainOk", { entries: verify.entries, head: verify.head })
    : t("console.chainBroken", { seq: verify.firstBad, reason: verify.reason }),
  verify.ok ? "ok" : "error");
  $("audit-status").dataset.ok = String(verify.ok);
  $("audit").tBodies[0].replaceChildren(...entries.map((e) => el("tr", { "data-seq": e.seq },
    el("td", { text: String(e.seq) }),
    el("td", { "data-label": t("console.at"), text: formatDate(e.at) }),
    el("td", { "data-label": t("console.actor"), class: "mono", text: e.actor }),
    el("td", { "data-label": t("console.action"), class: "mono", text: e.action }),
    el("td", { "data-label": t("console.subject"), class: "mono", text: e.subject }),
    el("td", { "data-label": t("console.details"), class: "mono small", text: JSON.stringify(e.details) }))));
  $("audit-more").hidden = entries.length === 0 || entries[entries.length - 1].seq <= 1;
}

function render() {
  if (!data) return;
  renderWorkspaces();
  renderInviteChoices();
  renderUsers();
  renderUsage();
  renderAudit();
}

async function load() {
  const [workspaces, users, usage, audit] = await Promise.all([
    call("GET", "/api/v1/console/workspaces"), call("GET", "/api/v1/console/users"),
    call("GET", "/api/v1/console/usage"), call("GET", "/api/v1/console/audit")]);
  data = { workspaces: workspaces.workspaces, users: users.users, usage, audit };
  $("console").hidden = false;
  render();
}

async function older() {
  const entries = data.audit.entries;
  const before = entries[entries.length - 1].seq;
  try {
    const page = await call("GET", `/api/v1/console/audit?before=${before}`);
    data.audit = { verify: page.verify, entries: [...entries, ...page.entries] };
    renderAudit();
  } catch (error) {
    notice(explain(error), "error");
  }
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  onLanguageChange(render);
  $("audit-more").addEventListener("click", older);
  bindForms();
  await enter(async (caller_) => {
    call = caller_;
    await load();
  }, { notice, accept: (session) => session.user.serviceAdmin });
  document.body.dataset.ready = "true";
}

main();
