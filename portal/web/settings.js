// settings.js: /settings, a signed-in requester's own settings (GET/PATCH /api/account):
// name, language, notifications, password, a new TOTP key (with a code of the current
// one), API tokens (shown once, listed, revoked), sign-out.

import { el } from "/static/api.js";
import { signedInPage } from "/static/credential.js";
import { run } from "/static/notice.js";
import { formatDate, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
const NOTIFY = ["completed", "refused", "expired", "message", "personalData"];
let view = null;
let tokens = [];
let factor = null;

let call = null;  // the session's caller, with its CSRF token

async function load() {
  const me = await call("GET", "/api/account");
  $("me-email").textContent = me.email;
  $("me-name").value = me.name;
  $("me-lang").value = me.lang;
  for (const kind of NOTIFY) $(`notify-${kind}`).checked = Boolean(me.notifications[kind]);
  tokens = (await call("GET", "/api/account/tokens")).tokens;
  render();
}

function tokenState(state) {
  return { active: t("settings.tokenActive"), expired: t("settings.tokenExpired"),
    revoked: t("settings.tokenRevokedState") }[state] || state;
}

function render() {
  const names = Object.fromEntries(view.workspaces.map((w) => [w.id, w.name]));
  $("token-workspace").replaceChildren(...view.workspaces.map((w) =>
    el("option", { value: w.id, text: w.name })));
  $("tokens").replaceChildren(...tokens.map((token) => el("li", { "data-token": token.id },
    el("strong", { text: token.name }), " ",
    el("span", { class: "small muted", text: t("settings.tokenLine", {
      workspace: names[token.workspace] || token.workspace,
      expires: formatDate(token.expiresAt, false), state: tokenState(token.state),
    }) }), " ",
    token.state === "active" ? el("button", {
      type: "button", text: t("settings.tokenRevoke"),
      onclick: () => run(async () => {
        await call("DELETE", `/api/account/tokens/${encodeURIComponent(token.id)}`);
        await load();
      }, "settings.tokenRevoked"),
    }) : null)));
}

async function main() {
  const page = await signedInPage({ relabel: () => { if (view) render(); } });
  if (!page) return;
  ({ view, call } = page);
  $("settings").hidden = false;
  $("profile-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      const notifications = Object.fromEntries(NOTIFY.map((k) => [k, $(`notify-${k}`).checked]));
      await call("PATCH", "/api/account", { name: $("me-name").value.trim(), lang: $("me-lang").value, notifications });
    }, "settings.saved");
  });
  $("password-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      await call("POST", "/api/account/password", { current: $("current").value, password: $("new-password").value });
      $("current").value = "";
      $("new-password").value = "";
    }, "settings.passwordChanged");
  });
  $("factor-new").addEventListener("click", () => run(async () => {
    factor = await call("GET", "/api/account/totp/new");
    $("factor-qr").src = factor.qr;
    $("factor-secret").textContent = factor.secret;
    $("factor-step").hidden = false;
  }));
  $("factor-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      await call("POST", "/api/account/totp", { secret: factor.secret, code: $("factor-code").value.trim(), currentCode: $("factor-current").value.trim() });
      $("factor-step").hidden = true;
    }, "settings.factorChanged");
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      const made = await call("POST", "/api/account/tokens", {
        name: $("token-name").value.trim(), workspace: $("token-workspace").value,
        expiresInDays: Number($("token-days").value),
      });
      $("token-value").textContent = made.token;
      $("token-shown").hidden = false;
      await load();
    });
  });
  $("sign-out").addEventListener("click", () => run(async () => {
    await call("POST", "/api/auth/sign-out");
    location.assign("/signin");
  }));
  await run(load);
  document.body.dataset.ready = "true";
}

main();
