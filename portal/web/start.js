// start.js: getting started (/workspace/{ws}/start): a first transaction to yourself,
// signed with the simulated card of `make run`. It checks the agent on loopback, then
// creates the transaction through POST /api/v1/workspaces/{ws}/transactions with the
// sample document of GET /api/v1/start (portal/routes/start.py).

import { api, blobToBase64, e164, explain, say } from "/static/api.js";
import { caller, keepToken, keptToken, signedIn } from "/static/credential.js";
import { bindSwitcher, chooseLanguage, language, setLanguage, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
const workspace = decodeURIComponent(location.pathname.split("/")[2] || "");
let facts = null;
let session = null;

function done(step, yes) {
  $(step).dataset.done = String(yes);
}

async function checkAgent() {
  const url = `http://127.0.0.1:${facts.agentPort}/v1/health`;
  $("agent-link").href = url;
  $("agent-link").textContent = url;
  try {
    // An opaque answer is enough: something listens there (the CSP allows the agent).
    await fetch(url, { mode: "no-cors", cache: "no-store" });
    say($("agent-status"), t("start.agentUp"), "ok");
    done("step-agent", true);
  } catch (_) {
    say($("agent-status"), t("start.agentDown"), "error");
    done("step-agent", false);
  }
}

function credential() {
  if (session) return { csrf: session.csrf };
  const typed = $("token").value.trim();
  if (typed) keepToken(typed);
  const token = typed || keptToken();
  return token ? { token } : null;
}

async function create(event) {
  event.preventDefault();
  const email = $("my-email").value.trim();
  const name = $("signer-name").value.trim();
  const phone = e164($("signer-phone").value);
  const who = credential();
  if (!who) {
    say($("create-status"), t("token.missing"), "error");
    $("token-field").hidden = false;
    return;
  }
  if (!email || !name || !phone) {
    say($("create-status"), t("start.fillIn"), "error");
    return;
  }
  $("create-submit").disabled = true;
  try {
    const sample = await api("GET", facts.sample, { blob: true });
    const tx = await caller(who)("POST", `/api/v1/workspaces/${encodeURIComponent(workspace)}/transactions`, {
      title: t("start.txTitle"),
      requester: { name: session ? session.user.name : email, email },
      documents: [{ name: "first.pdf", content: await blobToBase64(sample.blob) }],
      signers: [{ name, email, phone, lang: language() }],
      level: facts.level,
    });
    $("invite-link").href = tx.signers[0].inviteUrl;
    $("invite-link").hidden = false;
    say($("create-status"), t("start.created"), "ok");
    done("step-create", true);
  } catch (error) {
    // A refused field is named by the portal's message (English, as API.md says).
    const detail = error.code === "BAD_REQUEST" && error.body.message ? ` (${error.body.message})` : "";
    say($("create-status"), explain(error) + detail, "error");
  } finally {
    $("create-submit").disabled = false;
  }
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  done("step-run", true);
  session = await signedIn();
  if (session) $("my-email").value = session.user.email;
  else $("token-field").hidden = Boolean(keptToken());
  $("create-form").addEventListener("submit", create);
  $("agent-check").addEventListener("click", checkAgent);
  try {
    facts = await api("GET", "/api/v1/start");
    await checkAgent();
  } catch (error) {
    say($("notice"), explain(error), "error");
  }
  document.body.dataset.ready = "true";
}

main();
