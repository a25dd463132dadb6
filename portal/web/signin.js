// signin.js: /signin. E-mail and password (POST /api/auth/password), then the TOTP code
// (POST /api/auth/totp) or, for an account without one yet, its enrolment; or the
// organisation's OpenID Connect provider; or a password-reset link by e-mail.

import { api, explain, say } from "/static/api.js";
import { bindSwitcher, chooseLanguage, setLanguage, t } from "/static/i18n.js";
import { enrolTotp } from "/static/totp.js";

const $ = (id) => document.getElementById(id);
const AFTER = "/workspace";

function notice(text, kind = "info") {
  say($("notice"), text, kind);
}

async function done() {
  location.assign(AFTER);
}

async function password(event) {
  event.preventDefault();
  const email = $("email").value.trim();
  const secret = $("password").value;
  if (!email || !secret) {
    notice(t("signin.missing"), "error");
    return;
  }
  try {
    const answer = await api("POST", "/api/auth/password", { body: { email, password: secret } });
    $("password").value = "";
    $("password-step").hidden = true;
    notice("");
    if (answer.stage === "totp") {
      $("totp-step").hidden = false;
      $("totp").focus();
    } else {
      await enrolTotp($("notice"));
      await done();
    }
  } catch (error) {
    notice(explain(error), "error");
  }
}

async function totp(event) {
  event.preventDefault();
  const code = $("totp").value.trim();
  if (!/^[0-9]{6}$/.test(code)) {
    notice(t("account.codeFormat"), "error");
    return;
  }
  try {
    const view = await api("GET", "/api/auth/session");
    await api("POST", "/api/auth/totp", { body: { code }, csrf: view.csrf });
    await done();
  } catch (error) {
    notice(explain(error), "error");
  }
}

async function reset(event) {
  event.preventDefault();
  try {
    await api("POST", "/api/auth/reset", { body: { email: $("reset-email").value.trim() } });
    notice(t("signin.resetSent"));
  } catch (error) {
    notice(explain(error), "error");
  }
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  const error = new URLSearchParams(location.search).get("error");
  if (error) notice(explain({ name: "ApiError", code: error, body: {} }), "error");
  const view = await api("GET", "/api/auth/session");
  if (view.oidc.enabled) {
    $("oidc").textContent = t("signin.oidc", { name: view.oidc.name });
    $("oidc-row").hidden = false;
  }
  $("password-form").addEventListener("submit", password);
  $("totp-form").addEventListener("submit", totp);
  $("reset-form").addEventListener("submit", reset);
  $("forgot").addEventListener("click", () => {
    $("reset-step").hidden = false;
    $("reset-email").value = $("email").value;
    $("reset-email").focus();
  });
  if (view.stage === "done") await done();
  else if (view.stage === "totp") {
    $("password-step").hidden = true;
    $("totp-step").hidden = false;
  } else if (view.stage === "enrol") {
    $("password-step").hidden = true;
    await enrolTotp($("notice"));
    await done();
  }
  document.body.dataset.ready = "true";
}

main();
