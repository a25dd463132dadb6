// reset.js: /reset/<token>, the e-mailed password-reset link (single use): a new
// password, then sign in again with it and the second factor.

import { api, explain, say } from "/static/api.js";
import { bindSwitcher, chooseLanguage, setLanguage, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
const token = location.pathname.split("/").pop();

async function save(event) {
  event.preventDefault();
  const password = $("password").value;
  if (password !== $("password2").value) {
    say($("notice"), t("reset.mismatch"), "error");
    return;
  }
  try {
    await api("POST", `/api/auth/reset/${encodeURIComponent(token)}`, { body: { password } });
    $("reset-step").hidden = true;
    $("done").hidden = false;
    say($("notice"), t("reset.saved"));
  } catch (error) {
    say($("notice"), explain(error), "error");
  }
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  $("reset-form").addEventListener("submit", save);
  try {
    await api("GET", `/api/auth/reset/${encodeURIComponent(token)}`);
  } catch (error) {
    $("reset-step").hidden = true;
    say($("notice"), explain(error), "error");
  }
  document.body.dataset.ready = "true";
}

main();
