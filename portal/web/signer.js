// signer.js: the signer's page at /s/<invite> (portal/API.md "Signer API").
//
// Steps: consent -> [enrolment] -> documents -> sign -> done (or refused / waiting); the
// page resumes at SignerView.step. At the documents step the page asks the agent whether
// a token holds a qualified certificate; if none does, the first-time signer's
// enrolment starts (enrolment.js). The documents and the done step are
// signer-documents.js, the certificate chooser signer-certificates.js. Signing talks to
// the local qsign agent through its own client,
// imported from http://127.0.0.1:<agent.port>/v1/qsign.js: the PIN and the SMS code go
// to the agent only, never to the portal, and the PIN field is emptied before the
// agent is even called (JS strings cannot be wiped; no reference to it is kept).

import { api, el, explain, say } from "/static/api.js";
import { createEnrolment } from "/static/enrolment.js";
import {
  bindSwitcher, chooseLanguage, formatDate, language, onLanguageChange, setLanguage, t,
} from "/static/i18n.js";
import { renderConsents } from "/static/legal.js";
import {
  findCertificates, holderName, renderCertificateChoices,
} from "/static/signer-certificates.js";
import { createDocuments } from "/static/signer-documents.js";
import { byTotp, codeParams, factorProblem, showFactor } from "/static/signer-factor.js";
import { createSignerThread } from "/static/signer-messages.js";

const $ = (id) => document.getElementById(id);
const invite = location.pathname.replace(/^\/s\//, "").split("/")[0];
const base = `/api/s/${invite}`;
const STEPS = ["consent", "enrolment", "documents", "sign", "done", "refused", "waiting", "closed"];
const SESSION_ERRORS = ["SESSION_UNKNOWN", "HASHES_MISMATCH", "OTP_LOCKED", "OTP_EXPIRED",
                        "OTP_REPLAYED", "WRONG_STEP", "DOCUMENT_CHANGED"];

// The steps of the list at the top, in order; the others are outcomes beside them.
const LISTED = ["consent", "enrolment", "documents", "sign", "done"];
// Outcomes after which no earlier message (e.g. "Documents accepted") still applies.
const FINAL = ["done", "refused", "closed"];

let view = null;
let shownStep = null;

// Agent state: the module, the socket, certificates found, the prepared signing session.
const agent = { module: null, client: null, started: false, qualified: [], others: [],
                blocked: new Set(), unsubscribe: null };
let session = null;  // {sessionId, otpSession, hashes, documents, credentialID}
let busy = false;

const enrolment = createEnrolment({
  base,
  view: () => view,
  update: (next) => update(next),
  guarded: (button, action, onError) => guarded(button, action, onError),
  handle: (error, region) => handle(error, region),
  notice: (text, kind) => notice(text, kind),
  openAgent: () => openAgent(),
  checkCertificates: (client) => findCertificates(base, client),
});
const thread = createSignerThread({
  base, guarded: (button, action, onError) => guarded(button, action, onError),
});
const documents = createDocuments({
  base, view: () => view, notice: (text, kind) => notice(text, kind),
  guarded: (button, action) => guarded(button, action),
});

// ---------------------------------------------------------------------------- loading

async function load() {
  try {
    view = await api("GET", base);
  } catch (error) {
    await setLanguage(chooseLanguage());
    bindSwitcher();
    fatal(error);
    return;
  }
  // Only the languages the requester offers (portal/API.md "Transaction parameters").
  const offered = view.transaction.languages || [];
  const wanted = chooseLanguage(view.signer.lang);
  await setLanguage(offered.length && !offered.includes(wanted) ? offered[0] : wanted);
  for (const option of document.querySelectorAll("#lang-switch option")) {
    option.disabled = option.hidden = offered.length > 0 && !offered.includes(option.value);
  }
  bindSwitcher();
  onLanguageChange(() => render());
  wire();
  enrolment.wire();
  render();
}

function fatal(error) {
  $("loading").hidden = true;
  $("signer-app").hidden = true;
  const box = $("fatal");
  box.replaceChildren(el("p", { text: explain(error) }));
  if (["LINK_EXPIRED", "LINK_REVOKED", "LINK_INVALID"].includes(error.code)) {
    box.append(el("p", { text: t("signer.linkHelp") }));
  }
  box.hidden = false;
  document.body.dataset.ready = "true";
  document.body.dataset.error = error.code || "UNKNOWN";
}

function notice(text, kind = "info") {
  say($("notice"), text, kind);
}

/** After a call that answered a new SignerView. */
function update(next) {
  view = next;
  render();
}

/** Errors that end this page's use of the link. */
function handle(error, region = $("notice")) {
  if (["LINK_EXPIRED", "LINK_REVOKED", "LINK_INVALID", "TRANSACTION_CLOSED"].includes(error.code)) {
    fatal(error);
    return;
  }
  say(region, explain(error), "error");
}

// ---------------------------------------------------------------------------- rendering

function render() {
  $("loading").hidden = true;
  $("signer-app").hidden = false;
  const { transaction, signer, step } = view;
  $("tx-title").textContent = transaction.title;
  $("tx-meta").textContent = t("signer.meta", {
    requester: transaction.requester.name, expires: formatDate(transaction.expiresAt),
    name: signer.name || signer.email,
  });
  if (shownStep !== step && FINAL.includes(step)) notice("");
  shownStep = step;
  renderSteps();
  for (const name of STEPS) $(`step-${name}`).hidden = name !== step;
  if (step === "consent") renderConsents(view.consents, ["privacy", "terms"]);
  if (step === "enrolment") enrolment.render();
  else enrolment.stop();
  if (step === "documents") {
    documents.render();
    // A returning signer's certificate step is skipped once the agent has said so.
    Promise.resolve(enrolment.checkFirstTime()).then(renderSteps);
  }
  if (step === "sign") renderSign();
  if (step === "done") documents.renderDone();
  if (step === "refused") $("refused-reason").textContent = signer.refusalReason || "";
  const messaging = transaction.messaging && !["done", "refused", "closed"].includes(step);
  $("messaging").hidden = !messaging;
  if (messaging) thread.start(); else thread.stop();
  document.body.dataset.step = step;
  document.body.dataset.ready = "true";
}

/** The list of steps: done, current, to do, or skipped (the certificate step of a signer
 * whose token already holds their qualified certificate). */
function renderSteps() {
  const { step, enrolment: enrolling } = view;
  const at = step === "refused" ? LISTED.indexOf("documents") : LISTED.indexOf(step);
  const returning = !enrolling && (at > LISTED.indexOf("documents")
    || (step === "documents" && document.body.dataset.firstTime === "no"));
  for (const item of $("steps").children) {
    const index = LISTED.indexOf(item.dataset.step);
    let state = at < 0 || index > at ? "todo" : index === at ? "current" : "done";
    if (item.dataset.step === "enrolment" && returning) state = "skipped";
    if (step === "done" && index === at) state = "done";
    item.dataset.state = state;
    item.title = state === "skipped" ? t("signer.stepSkipped") : "";
    if (item.dataset.step === step) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
}

// ---------------------------------------------------------------------------- consent

async function submitConsent(event) {
  event.preventDefault();
  if (!$("consent-privacy").checked || !$("consent-terms").checked) {
    notice(t("consent.required"), "error");
    return;
  }
  const accepted = view.consents.map(({ kind, version, sha256 }) => ({ kind, version, sha256 }));
  await guarded($("consent-submit"), async () => {
    update(await api("POST", `${base}/consents`, { body: { accepted } }));
    notice("");
  });
}

// ---------------------------------------------------------------------------- signing

function renderSign() {
  showFactor(view);
  const phone = view.signer.phoneMasked;
  $("phone-confirm-text").textContent = phone ? t("sign.phoneConfirm", { phone }) : t("sign.noPhone");
  $("phone-confirm").disabled = !phone;
  renderCertificates();
  if (!agent.started) {
    agent.started = true;
    connectAgent();
  }
}

function agentStatus(text, kind = "info") {
  say($("agent-status"), text, kind);
}

function signError(text) {
  say($("sign-error"), text, "error");
}

function progress(text) {
  const p = $("sign-progress");
  p.textContent = text;
  p.hidden = !text;
}

async function connectAgent() {
  $("pairing").hidden = true;
  $("agent-actions").hidden = true;
  $("sign-form").hidden = true;
  const port = view.agent && view.agent.port;
  agentStatus(t("sign.agentConnecting"));
  try {
    if (!agent.module) agent.module = await import(`http://127.0.0.1:${Number(port)}/v1/qsign.js`);
  } catch (_) {
    agentStatus(t("agentError.AGENT_UNREACHABLE"), "error");
    $("agent-actions").hidden = false;
    return;
  }
  const q = agent.module;
  if (agent.client && !agent.client.closed) {
    await loadCertificates();  // already connected (the first-time check)
    return;
  }
  try {
    agent.client = await q.connect({ port });
  } catch (error) {
    if (error.code !== "CONNECT_FAILED") {
      agentStatus(explain(error), "error");
      $("agent-actions").hidden = false;
      return;
    }
    try {
      const pairing = await q.pair({ port });
      if (!pairing.paired) {
        showPairing(pairing.code);
        return;
      }
      agentStatus(explain(error), "error");
    } catch (pairError) {
      agentStatus(explain(pairError), "error");
    }
    $("agent-actions").hidden = false;
    return;
  }
  try {
    agent.unsubscribe = await agent.client.subscribe(onTokenEvent);
  } catch (_) {
    agent.unsubscribe = null;  // no events: removal is still caught by the calls
  }
  await loadCertificates();
}

/** The agent's client without any UI: null when it cannot be reached or is not paired. */
async function openAgent() {
  if (agent.client && !agent.client.closed) return agent.client;
  const port = view.agent && view.agent.port;
  try {
    if (!agent.module) agent.module = await import(`http://127.0.0.1:${Number(port)}/v1/qsign.js`);
    agent.client = await agent.module.connect({ port });
  } catch (_) {
    agent.client = null;
    return null;
  }
  try {
    agent.unsubscribe = await agent.client.subscribe(onTokenEvent);
  } catch (_) {
    agent.unsubscribe = null;
  }
  return agent.client;
}

function showPairing(code) {
  agentStatus("");
  $("pair-code").textContent = code;
  $("pair-command").textContent = `qsign agent approve ${code}`;
  $("pairing").hidden = false;
  document.body.dataset.pairing = code;
}

function onTokenEvent(event) {
  if (!event) return;
  enrolment.tokenEvent(event);
  if (!view || view.step !== "sign") return;
  const selected = selectedCredential();
  if (event.kind === "removed") {
    const affected = !selected || selected.tokenID === event.tokenID;
    if (affected && (session || busy)) {
      dropSession();
      signError(explain({ name: "QsignError", code: "TOKEN_REMOVED", data: {} }));
    }
    agent.blocked.delete(event.tokenID);
    loadCertificates();
  } else if (event.kind === "inserted") {
    loadCertificates();
  }
}

async function loadCertificates() {
  const client = agent.client;
  if (!client || client.closed) {
    agentStatus(t("agentError.CONNECTION_CLOSED"), "error");
    agent.client = null;
    $("agent-actions").hidden = false;
    return;
  }
  agentStatus(t("sign.lookingForCertificates"));
  let qualified;
  let others;
  let tokens;
  try {
    ({ qualified, others, tokens } = await findCertificates(base, client));
  } catch (error) {
    agentStatus(explain(error), "error");
    $("agent-actions").hidden = false;
    if (error.code === "CONNECTION_CLOSED") agent.client = null;
    return;
  }
  agent.qualified = qualified;
  agent.others = others;
  // A token but no qualified certificate: the first-time signer gets one here too.
  $("sign-enrol-actions").hidden = qualified.length > 0 || tokens.length === 0;
  if (qualified.length === 0) {
    let text = t(credentialsFound(others) ? "sign.noQualified" : "sign.noCertificate");
    if (tokens.length > 0) {
      text = credentialsFound(others) ? `${text} ${t("enrol.firstTime")}` : t("enrol.firstTime");
    }
    // Someone else's qualified certificate: say whose, then offer the signer's own.
    const foreign = others.find((e) => e.check && e.check.qualified && e.check.ownCertificate === false);
    if (foreign) text = t("sign.notYourCertificate", { holder: holderName(foreign.check) });
    agentStatus(text, "warn");
  } else {
    agentStatus(t("sign.certificatesFound", { count: qualified.length }), "ok");
  }
  $("sign-form").hidden = false;
  renderCertificates();
}

function credentialsFound(list) {
  return list.length > 0;
}

function renderCertificates() {
  const previous = selectedCredential();
  renderCertificateChoices(agent, previous && previous.credentialID, (entry) => {
    if (session && session.credentialID !== entry.credentialID) dropSession();
  });
}

function selectedCredential() {
  const checked = document.querySelector('input[name="credential"]:checked');
  return checked ? agent.qualified.find((e) => e.credentialID === checked.value) || null : null;
}

function dropSession() {
  session = null;
  $("otp-step").hidden = !byTotp(view);  // a TOTP code needs no step before it
  $("otp").value = "";
}

function checkForm() {
  const credential = selectedCredential();
  if (!credential) return [null, t("sign.chooseCertificate")];
  if (agent.blocked.has(credential.tokenID)) return [null, t("agentError.PIN_BLOCKED")];
  if (!byTotp(view) && !$("phone-confirm").checked) return [null, t("sign.confirmPhone")];
  if (!/^[0-9]{4,8}$/.test($("pin").value)) return [null, t("sign.pinFormat")];
  return [credential, null];
}

async function prepareSession(credential) {
  const prepared = await api("POST", `${base}/sign/prepare`, {
    body: { certificate: credential.certificate, chain: credential.chain, phoneConfirmed: true },
  });
  return { ...prepared, credentialID: credential.credentialID, tokenID: credential.tokenID };
}

async function sendOtp(button) {
  const [credential, problem] = checkForm();
  if (problem) {
    signError(problem);
    return;
  }
  if (!agent.client || agent.client.closed) {
    signError(t("agentError.CONNECTION_CLOSED"));
    $("agent-actions").hidden = false;
    return;
  }
  if (typeof agent.client.sendOTP !== "function") {
    signError(t("agentError.SMS_UNSUPPORTED"));
    return;
  }
  say($("sign-error"), "");
  await guarded(button, async () => {
    if (!session || session.credentialID !== credential.credentialID) {
      progress(t("sign.preparing"));
      session = await prepareSession(credential);
    }
    progress(t("sign.sendingOtp"));
    let sent;
    try {
      sent = await agent.client.sendOTP({
        credentialID: credential.credentialID, hashes: session.hashes, otpSession: session.otpSession,
      });
    } catch (error) {
      // This session's code was used (e.g. a wrong PIN after a good code): prepare anew once.
      if (!isSpentOtp(error) && !SESSION_ERRORS.includes(error.code)) throw error;
      session = await prepareSession(credential);
      sent = await agent.client.sendOTP({
        credentialID: credential.credentialID, hashes: session.hashes, otpSession: session.otpSession,
      });
    }
    const phone = (sent && sent.phoneMasked) || view.signer.phoneMasked;
    const minutes = Math.max(1, Math.round(((sent && sent.expiresIn) || 300) / 60));
    $("otp-sent").textContent = t("sign.otpSent", { phone, minutes });
    $("otp-step").hidden = false;
    progress("");
    $("otp").focus();
  }, (error) => {
    progress("");
    if (SESSION_ERRORS.includes(error.code) || isSpentOtp(error)) dropSession();
    if (error.code === "CERTIFICATE_NOT_SIGNERS") {
      // Someone else's certificate (sign/prepare refused it): say whose, offer enrolment.
      dropSession();
      signError(t("error.CERTIFICATE_NOT_SIGNERS", { holder: (error.body && error.body.holder) || "?" }));
      $("sign-enrol-actions").hidden = false;
      return true;
    }
    signError(explain(error));
    return true;
  });
}

async function sign(event) {
  event.preventDefault();
  if ($("otp-step").hidden) {
    // Enter in the PIN field: the next step is the SMS code, not the signature.
    await sendOtp($("send-otp"));
    return;
  }
  const [credential, problem] = checkForm();
  if (problem) {
    signError(problem);
    return;
  }
  const otp = $("otp").value.replace(/\s/g, "");
  if (!/^[0-9]{6}$/.test(otp)) {
    signError(t("sign.otpFormat"));
    return;
  }
  if (!byTotp(view) && (!session || session.credentialID !== credential.credentialID)) {
    signError(t("sign.codeFirst"));
    return;
  }
  say($("sign-error"), "");
  // The PIN leaves the field before any await: nothing on the page holds it afterwards.
  let pin = $("pin").value;
  $("pin").value = "";
  $("otp").value = "";
  let current = session;
  await guarded($("sign-submit"), async () => {
    if (!current || current.credentialID !== credential.credentialID) {  // TOTP: prepare now
      progress(t("sign.preparing"));
      current = session = await prepareSession(credential);
    }
    progress(t("sign.authorizing"));
    let authorization;
    try {
      authorization = await agent.client.authorize({
        credentialID: current.credentialID, hashes: current.hashes, pin,
        ...codeParams(current, otp),
      });
    } finally {
      pin = null;
    }
    progress(t("sign.signing"));
    const params = { credentialID: current.credentialID, sad: authorization.sad, hashes: current.hashes };
    if (typeof current.sessionId === "string" && current.sessionId.length >= 8) {
      params.idempotencyKey = current.sessionId.slice(0, 100);
    }
    const signatures = await agent.client.signHash(params);
    progress(t("sign.completing"));
    const next = await api("POST", `${base}/sign/complete`,
                           { body: { sessionId: current.sessionId, signatures } });
    session = null;
    progress("");
    update(next);
  }, (error) => {
    progress("");
    pin = null;
    if (error.code === "PIN_BLOCKED" || (error.code === "INVALID_PIN" && error.attemptsLeft === 0)) {
      agent.blocked.add(credential.tokenID);
      dropSession();
      renderCertificates();
    } else if (["TOKEN_REMOVED", "SAD_INVALID", "PIN_STATE_LOST", "SIGNATURE_INVALID",
                "CONNECTION_CLOSED", "TOKEN_NOT_FOUND"].includes(error.code)
               || SESSION_ERRORS.includes(error.code) || isSpentOtp(error)) {
      dropSession();
    }
    if (error.code === "CONNECTION_CLOSED") {
      agent.client = null;
      $("agent-actions").hidden = false;
    }
    // A wrong PIN comes after the code was accepted (the agent checks the code first):
    // that code is used up, a new one is needed. A wrong code leaves the session as is.
    let hint = "";
    if (error.code === "INVALID_OTP" && session) hint = t("sign.retypeBoth");
    else if (!agent.blocked.has(credential.tokenID)) {
      hint = t(byTotp(view) ? "sign.retypeBoth" : "sign.retryFromCode");
    }
    signError(factorProblem(error) || (hint ? `${explain(error)} ${hint}` : explain(error)));
    $("pin").focus();
    return true;
  });
}

/** The code can no longer be used (expired, used, other session): a new one is needed. */
function isSpentOtp(error) {
  const data = error.data || {};
  return ["OTP_EXPIRED", "OTP_THROTTLED", "OTP_UNAVAILABLE"].includes(error.code) ||
    (error.code === "INVALID_OTP" && ["replayed", "session", "hashes"].includes(data.reason));
}

// ---------------------------------------------------------------------------- wiring

/** Run an action with its button disabled; errors go to `onError` or the notice. */
async function guarded(button, action, onError = null) {
  if (busy) return;
  busy = true;
  if (button) button.disabled = true;
  document.body.dataset.busy = "true";
  try {
    await action();
  } catch (error) {
    if (!(onError && onError(error))) handle(error);
  } finally {
    busy = false;
    if (button) button.disabled = false;
    delete document.body.dataset.busy;
  }
}

function wire() {
  $("consent-form").addEventListener("submit", submitConsent);
  documents.wire();
  $("accept").addEventListener("click", () => guarded($("accept"), async () => {
    update(await api("POST", `${base}/accept`, { body: {} }));
    notice(t("documents.accepted"), "ok");
  }));
  $("restart").addEventListener("click", () => { $("restart-confirm").hidden = false; $("restart-yes").focus(); });
  $("restart-no").addEventListener("click", () => { $("restart-confirm").hidden = true; $("restart").focus(); });
  $("restart-yes").addEventListener("click", () => guarded($("restart-yes"), async () => {
    const { inviteUrl } = await api("POST", `${base}/restart`, { body: {} });
    const next = new URL(inviteUrl, location.origin);
    next.searchParams.set("lang", language());
    location.assign(next.pathname + next.search);
  }));
  $("refuse-open").addEventListener("click", () => { $("refuse-form").hidden = false; $("refuse-reason").focus(); });
  $("refuse-cancel").addEventListener("click", () => { $("refuse-form").hidden = true; $("refuse-open").focus(); });
  $("refuse-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = $("refuse-reason").value.trim();
    if (!reason) {
      notice(t("documents.refuseReasonMissing"), "error");
      $("refuse-reason").focus();
      return;
    }
    guarded($("refuse-submit"), async () => update(await api("POST", `${base}/refuse`, { body: { reason } })));
  });
  $("agent-retry").addEventListener("click", () => connectAgent());
  $("sign-enrol-start").addEventListener("click", () => enrolment.start($("sign-enrol-start"), $("agent-status")));
  $("pair-retry").addEventListener("click", () => connectAgent());
  $("refresh-certificates").addEventListener("click", () => loadCertificates());
  $("send-otp").addEventListener("click", () => sendOtp($("send-otp")));
  $("resend-otp").addEventListener("click", () => sendOtp($("resend-otp")));
  $("sign-form").addEventListener("submit", sign);
  thread.wire();
  $("waiting-refresh").addEventListener("click", () => guarded($("waiting-refresh"), async () => update(await api("GET", base))));
}

load();
