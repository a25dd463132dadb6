// outbox.js: the tester's view of the SMS and e-mails the portal sent
// (GET /api/v1/outbox with the requester token, shared with /requester in this tab).

import { api, el, explain, say } from "/static/api.js";
import { bindSwitcher, chooseLanguage, formatDate, onLanguageChange, setLanguage, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "qsign.requesterToken";
let token = null;
let outbox = null;

function notice(text, kind = "info") {
  say($("notice"), text, kind);
}

function showToken() {
  $("token-field").hidden = Boolean(token);
  $("forget").hidden = !token;
}

async function show(event) {
  if (event) event.preventDefault();
  const typed = $("token").value.trim();
  if (typed) token = typed;
  $("token").value = "";
  if (!token) {
    notice(t("token.missing"), "error");
    showToken();
    $("token").focus();
    return;
  }
  const to = $("to").value.trim();
  const query = to ? `?to=${encodeURIComponent(to)}` : "";
  $("show").disabled = true;
  try {
    outbox = await api("GET", `/api/v1/outbox${query}`, { token });
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* private mode */ }
    notice("");
    render();
  } catch (error) {
    if (error.code === "UNAUTHORIZED") {
      token = null;
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
    }
    notice(explain(error), "error");
  } finally {
    $("show").disabled = false;
    showToken();
  }
}

function render() {
  if (!outbox) return;
  const sms = [...outbox.sms].reverse();
  const mail = [...outbox.mail].reverse();
  $("sms-empty").hidden = sms.length > 0;
  $("sms").replaceChildren(...sms.map((m) => el("li", { "data-to": m.to },
    el("div", { class: "row" }, el("strong", { text: m.to }), el("span", { class: "small muted", text: formatDate(m.at) })),
    el("p", { class: "mono", text: m.text }))));
  $("mail-empty").hidden = mail.length > 0;
  $("mail").replaceChildren(...mail.map((m) => el("li", { "data-to": m.to },
    el("div", { class: "row" }, el("strong", { text: m.to }), el("span", { class: "small muted", text: formatDate(m.at) })),
    el("p", { text: m.subject }))));
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  onLanguageChange(render);
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (_) { token = null; }
  $("filter-form").addEventListener("submit", show);
  $("forget").addEventListener("click", () => {
    token = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
    showToken();
    $("token").focus();
  });
  showToken();
  if (token) await show();
  document.body.dataset.ready = "true";
}

main();
