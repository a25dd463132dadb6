// workspace.js: /workspace, a signed-in requester's workspaces: choose one, create one,
// its members and their roles (admins and owners change them), invitations by e-mail.

import { api, el } from "/static/api.js";
import { caller, signedInPage } from "/static/credential.js";
import { run } from "/static/notice.js";
import { t } from "/static/i18n.js";
import { ROLES, roleName } from "/static/roles.js";

const $ = (id) => document.getElementById(id);
const RANK = Object.fromEntries(ROLES.map((role, i) => [role, i + 1]));
let view = null;
let current = null;

let call = null;  // the session's caller, with its CSRF token

async function refresh(chosen = null) {
  view = await api("GET", "/api/auth/session");
  call = caller({ csrf: view.csrf });
  const id = chosen || $("ws-select").value || (view.workspaces[0] && view.workspaces[0].id);
  $("ws-select").replaceChildren(...view.workspaces.map((w) =>
    el("option", { value: w.id, text: w.name, selected: w.id === id })));
  current = id ? await call("GET", `/api/v1/workspaces/${encodeURIComponent(id)}`) : null;
  render();
}

function roleSelect(member) {
  const mine = RANK[current.role];
  const select = el("select", { "aria-label": t("workspace.roleOf", { name: member.name }) },
    ...ROLES.map((role) => el("option", {
      value: role, text: roleName(role), selected: role === member.role,
      disabled: mine < RANK.owner && RANK[role] >= RANK.admin,
    })));
  select.addEventListener("change", () => run(async () => {
    await call("PATCH", `/api/v1/workspaces/${current.id}/members/${member.id}`, { role: select.value });
    await refresh(current.id);
  }, "workspace.roleChanged"));
  return select;
}

function render() {
  $("ws-role").textContent = current ? t("workspace.yourRole", { role: roleName(current.role) }) : "";
  $("ws-start").hidden = !current;
  if (current) $("ws-start").href = `/workspace/${encodeURIComponent(current.id)}/start`;
  const manages = current && RANK[current.role] >= RANK.admin;
  $("invite-card").hidden = !manages;
  $("members").replaceChildren(...(current ? current.members : []).map((member) => {
    const mayTouch = manages && member.id !== view.user.id &&
      (RANK[current.role] >= RANK.owner || RANK[member.role] < RANK.admin);
    return el("tr", { "data-member": member.email },
      el("td", { text: member.name }), el("td", { text: member.email }),
      el("td", {}, mayTouch ? roleSelect(member) : roleName(member.role)),
      el("td", {}, mayTouch ? el("button", {
        type: "button", text: t("workspace.remove"),
        onclick: () => run(async () => {
          await call("DELETE", `/api/v1/workspaces/${current.id}/members/${member.id}`);
          await refresh(current.id);
        }, "workspace.removed"),
      }) : null));
  }));
}

async function main() {
  const page = await signedInPage({ relabel: () => { if (view) render(); } });
  if (!page) return;
  ({ view, call } = page);
  $("workspace").hidden = false;
  $("ws-select").addEventListener("change", () => run(() => refresh($("ws-select").value)));
  $("create-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      const made = await call("POST", "/api/v1/workspaces", { name: $("ws-name").value.trim() });
      $("ws-name").value = "";
      await refresh(made.id);
    }, "workspace.created");
  });
  $("invite-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      await call("POST", `/api/v1/workspaces/${current.id}/invitations`, {
        email: $("invite-email").value.trim(), role: $("invite-role").value,
      });
      $("invite-email").value = "";
    }, "workspace.invited");
  });
  await run(() => refresh());
  document.body.dataset.ready = "true";
}

main();
