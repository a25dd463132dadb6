// me.js: Personal Space at /me/<space> (portal/API.md "Personal Space"): an SMS code
// opens a session (kept in this tab's sessionStorage), then the signed documents (each
// with its validation report on demand) and the signer's certificates with their validity.

import { api, el, explain, saveBlob, say } from "/static/api.js";
import { bindSwitcher, chooseLanguage, formatDate, onLanguageChange, setLanguage, t } from "/static/i18n.js";
import { showReport } from "/static/validation.js";

const $ = (id) => document.getElementById(id);
const space = location.pathname.replace(/^\/me\//, "").split("/")[0];
const SESSION_KEY = `qsign.me.${space}`;
let session = null;
let profile = null;
let otpSession = null;

function notice(text, kind = "info") {
  say($("notice"), text, kind);
}

function remember(value) {
  session = value;
  try {
    if (value) sessionStorage.setItem(SESSION_KEY, value); else sessionStorage.removeItem(SESSION_KEY);
  } catch (_) { /* private mode */ }
}

async function sendCode() {
  const button = $("send-code");
  button.disabled = true;
  try {
    const sent = await api("POST", `/api/me/${space}/otp`, { body: {} });
    otpSession = sent.otpSession;
    const minutes = Math.max(1, Math.round((sent.expiresIn || 300) / 60));
    $("code-sent").textContent = t("me.codeSent", { phone: sent.phoneMasked, minutes });
    $("code-form").hidden = false;
    $("send-code").textContent = t("me.sendAgain");
    notice("");
    $("code").focus();
  } catch (error) {
    notice(explain(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function submitCode(event) {
  event.preventDefault();
  const code = $("code").value.replace(/\s/g, "");
  if (!/^[0-9]{6}$/.test(code)) {
    notice(t("sign.otpFormat"), "error");
    return;
  }
  if (!otpSession) {
    notice(t("sign.codeFirst"), "error");
    return;
  }
  $("code-submit").disabled = true;
  try {
    const opened = await api("POST", `/api/me/${space}/session`, { body: { otpSession, code } });
    $("code").value = "";
    remember(opened.session);
    notice("");
    await showSpace();
  } catch (error) {
    notice(explain(error), "error");
  } finally {
    $("code-submit").disabled = false;
  }
}

async function showSpace() {
  try {
    profile = await api("GET", "/api/me", { token: session });
  } catch (error) {
    remember(null);
    $("space").hidden = true;
    $("login").hidden = false;
    if (error.code !== "UNAUTHORIZED") notice(explain(error), "error");
    else notice(t("me.sessionEnded"), "warn");
    return;
  }
  $("login").hidden = true;
  $("space").hidden = false;
  render();
}

function render() {
  if (!profile) return;
  $("who-h").textContent = profile.name || profile.email;
  $("who-email").textContent = profile.email;
  $("docs-empty").hidden = profile.documents.length > 0;
  $("documents").replaceChildren(...profile.documents.map((d) => el("li", {},
    el("div", { class: "row" },
      el("span", {}, el("strong", { text: d.name }), " ", el("span", { class: "muted", text: d.title })),
      el("span", { class: "actions" },
        el("button", { type: "button", "aria-label": t("validation.showLabel", { name: d.name }), text: t("validation.show"),
                       onclick: (event) => showValidation(event.currentTarget, d) }),
        el("button", { type: "button", "aria-label": t("me.downloadLabel", { name: d.name }), text: t("me.download"),
                       onclick: (event) => download(event.currentTarget, d) }))),
    el("p", { class: "small muted", text: t("me.signedAt", { at: formatDate(d.signedAt) }) }),
    el("div", { class: "validation", "data-doc": `${d.transactionId}/${d.docId}`, hidden: true }))));
  $("certs-empty").hidden = profile.certificates.length > 0;
  $("certificates").replaceChildren(...profile.certificates.map((c) => el("li", {},
    el("div", { class: "row" },
      el("strong", { text: c.commonName || c.subject }),
      el("span", { class: "badge", "data-status": c.status, text: t(`status.certificate.${c.status}`) })),
    el("dl", { class: "facts small" },
      el("dt", { text: t("me.issuer") }), el("dd", { text: c.issuer }),
      el("dt", { text: t("me.serial") }), el("dd", { class: "mono", text: c.serial }),
      el("dt", { text: t("me.validity") }), el("dd", { text: t("me.validityRange", {
        from: formatDate(c.notBefore, false), until: formatDate(c.notAfter, false) }) }),
      el("dt", { text: t("me.qualified") }), el("dd", { text: t(c.qualified ? "me.qualifiedYes" : "common.no") })))));
}

/** The document's validation report (portal/API.md "Validation"), under its row. */
async function showValidation(button, doc) {
  const path = `/api/me/documents/${encodeURIComponent(doc.transactionId)}/${encodeURIComponent(doc.docId)}/validation`;
  button.disabled = true;
  try {
    await showReport(button.closest("li").querySelector(".validation"),
      () => api("GET", path, { token: session }));
  } catch (error) {
    if (error.code === "UNAUTHORIZED") await showSpace(); else notice(explain(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function download(button, doc) {
  button.disabled = true;
  try {
    const path = doc.url || `/api/me/documents/${encodeURIComponent(doc.transactionId)}/${encodeURIComponent(doc.docId)}`;
    const { blob, filename } = await api("GET", path, { token: session, blob: true });
    saveBlob(blob, filename || doc.name);
  } catch (error) {
    if (error.code === "UNAUTHORIZED") await showSpace(); else notice(explain(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  onLanguageChange(render);
  $("send-code").addEventListener("click", sendCode);
  $("code-form").addEventListener("submit", submitCode);
  $("logout").addEventListener("click", () => {
    remember(null);
    profile = null;
    $("space").hidden = true;
    $("login").hidden = false;
    $("code-form").hidden = true;
    $("send-code").focus();
  });
  try { session = sessionStorage.getItem(SESSION_KEY); } catch (_) { session = null; }
  if (session) await showSpace();
  document.body.dataset.ready = "true";
}

main();
