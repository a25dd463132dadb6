// advanced.js: a workspace's advanced parameters (/advanced?ws=<id>) over
// /api/v1/workspaces/{ws}/webhooks and /mail (portal/API.md "Webhooks", "Mail
// settings"): the webhooks with their delivery log, a new one (its secret shown once),
// and the sender name and texts of the mails to the signers.

import { el, explain } from "/static/api.js";
import { enterWorkspace, pageLanguage } from "/static/credential.js";
import { formatDate, t } from "/static/i18n.js";
import { notice } from "/static/notice.js";

const $ = (id) => document.getElementById(id);
const EVENTS = ["viewed", "accepted", "signed", "refused", "completed", "expired", "cancelled"];
const TEXTS = ["invite", "reminder"];
let call = null;
let workspace = "default";

function base() {
  return `/api/v1/workspaces/${encodeURIComponent(workspace)}`;
}

function drawEvents() {
  $("hook-events").replaceChildren(...EVENTS.map((name) => el("label", { class: "check" },
    el("input", { type: "checkbox", value: name, checked: true, "data-event": name }),
    el("span", { class: "mono", text: name }))));
}

async function showDeliveries(hook) {
  const log = (await call("GET", `${base()}/webhooks/${encodeURIComponent(hook.id)}/deliveries`)).deliveries;
  $("deliveries").hidden = false;
  $("delivery-rows").replaceChildren(...log.map((d) => el("tr", { "data-delivery": d.id },
    el("td", { class: "mono", text: `${d.event} · ${formatDate(d.createdAt)}` }),
    el("td", { text: d.state }),
    el("td", { class: "mono", text: d.attempts.map((a) => a.status ?? a.error).join(" · ") }))));
}

function drawHooks(hooks) {
  $("hooks-empty").hidden = hooks.length > 0;
  $("hooks").replaceChildren(...hooks.map((hook) => el("li", { "data-hook": hook.id },
    el("p", { class: "mono", text: hook.url }),
    el("p", { class: "small", text: hook.events.join(", ") }),
    el("div", { class: "actions" },
      el("button", { type: "button", "data-log": hook.id, text: t("advanced.showDeliveries"),
        onclick: () => showDeliveries(hook).catch((error) => notice(explain(error), "error")) }),
      el("button", { type: "button", class: "danger", text: t("advanced.removeHook"),
        onclick: async () => {
          try {
            await call("DELETE", `${base()}/webhooks/${encodeURIComponent(hook.id)}`);
            await loadHooks();
          } catch (error) {
            notice(explain(error), "error");
          }
        } })))));
}

async function loadHooks() {
  drawHooks((await call("GET", `${base()}/webhooks`)).webhooks);
}

async function loadMail() {
  const settings = await call("GET", `${base()}/mail`);
  $("sender-name").value = settings.senderName || "";
  for (const kind of TEXTS) {
    const text = settings.texts[kind] || {};
    $(`${kind}-subject`).value = text.subject || "";
    $(`${kind}-body`).value = text.body || "";
  }
}

async function addHook(event) {
  event.preventDefault();
  const events = [...document.querySelectorAll("#hook-events input:checked")].map((box) => box.value);
  $("hook-submit").disabled = true;
  try {
    const hook = await call("POST", `${base()}/webhooks`, { url: $("hook-url").value.trim(), events });
    $("secret").value = hook.secret;
    $("hook-secret").hidden = false;
    $("hook-form").reset();
    drawEvents();
    await loadHooks();
  } catch (error) {
    notice(explain(error), "error");
  } finally {
    $("hook-submit").disabled = false;
  }
}

async function saveMail(event) {
  event.preventDefault();
  const texts = {};
  for (const kind of TEXTS) {
    const subject = $(`${kind}-subject`).value.trim();
    const body = $(`${kind}-body`).value.trim();
    if (subject || body) texts[kind] = { subject, body };
  }
  $("mail-submit").disabled = true;
  try {
    await call("PUT", `${base()}/mail`, { senderName: $("sender-name").value.trim(), texts });
    notice(t("advanced.mailSaved"), "ok");
  } catch (error) {
    notice(explain(error), "error");  // explain names the refused field
  } finally {
    $("mail-submit").disabled = false;
  }
}

async function main() {
  await pageLanguage();
  drawEvents();
  $("hook-form").addEventListener("submit", addHook);
  $("mail-form").addEventListener("submit", saveMail);
  await enterWorkspace(async (caller, ws) => {
    call = caller;
    workspace = ws;
    await loadHooks();
    await loadMail();
    $("advanced").hidden = false;
  }, { notice });
  document.body.dataset.ready = "true";
}

main();
