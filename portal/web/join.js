// join.js: /join/<token>, a workspace invitation (single use): a new account (name and
// password), then its TOTP second factor, then the workspace page; or, where the portal
// has an OpenID Connect provider, the account made from its identity. An address that
// has an account joins signed in as that account.

import { api, explain, say } from "/static/api.js";
import { bindSwitcher, chooseLanguage, setLanguage, t } from "/static/i18n.js";
import { roleName } from "/static/roles.js";
import { enrolTotp } from "/static/totp.js";

const $ = (id) => document.getElementById(id);
const token = location.pathname.split("/").pop();
const path = `/api/auth/invitations/${encodeURIComponent(token)}`;
let invitation = null;

async function join(event) {
  event.preventDefault();
  try {
    if (invitation.hasAccount) {
      const view = await api("GET", "/api/auth/session");
      await api("POST", path, { csrf: view.csrf });
      location.assign("/workspace");
      return;
    }
    await api("POST", path, { body: { name: $("name").value.trim(), password: $("password").value } });
    $("password").value = "";
    $("join-step").hidden = true;
    say($("notice"), "");
    await enrolTotp($("notice"));
    location.assign("/workspace");
  } catch (error) {
    say($("notice"), explain(error), "error");
  }
}

function render() {
  $("join-h").textContent = invitation.workspace;
  $("join-who").textContent = t("join.who", { email: invitation.email, role: roleName(invitation.role) });
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  try {
    invitation = await api("GET", path);
  } catch (error) {
    say($("notice"), explain(error), "error");
    document.body.dataset.ready = "true";
    return;
  }
  render();
  $("new-account").hidden = invitation.hasAccount;
  $("has-account").hidden = !invitation.hasAccount;
  $("join-step").hidden = false;
  $("join-form").addEventListener("submit", join);
  const view = await api("GET", "/api/auth/session");
  if (view.oidc.enabled && !invitation.hasAccount) {  // or with the organisation's provider
    $("join-oidc").textContent = t("join.oidc", { name: view.oidc.name });
    $("join-oidc").href = `/api/auth/oidc/start?join=${encodeURIComponent(token)}`;
    $("join-oidc-row").hidden = false;
  }
  document.body.dataset.ready = "true";
}

main();
