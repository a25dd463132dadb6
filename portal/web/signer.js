// signer.js: the signer's page at /s/<invite> (portal/API.md "Signer API").
//
// Steps: consent -> [enrolment] -> documents -> sign -> done (or refused / waiting); the
// page resumes at SignerView.step. At the documents step the page asks the agent whether
// a token holds a qualified certificate; if none does, the first-time signer's
// enrolment starts (enrolment.js). Signing talks to the local qsign agent through its own client,
// imported from http://127.0.0.1:<agent.port>/v1/qsign.js: the PIN and the SMS code go
// to the agent only, never to the portal, and the PIN field is emptied before the
// agent is even called (JS strings cannot be wiped; no reference to it is kept).

import { api, el, explain, saveBlob, say } from "/static/api.js";
import { createEnrolment } from "/static/enrolment.js";
import {
  bindSwitcher, chooseLanguage, formatDate, language, onLanguageChange, setLanguage, t,
} from "/static/i18n.js";
import { renderConsents } from "/static/legal.js";
import { renderThread, typedMessage } from "/static/messages.js";

const $ = (id) => document.getElementById(id);
const invite = location.pathname.replace(/^\/s\//, "").split("/")[0];
const base = `/api/s/${invite}`;
const STEPS = ["consent", "enrolment", "documents", "sign", "done", "refused", "waiting", "closed"];
const SESSION_ERRORS = ["SESSION_UNKNOWN", "HASHES_MISMATCH", "OTP_LOCKED", "OTP_EXPIRED",
                        "OTP_REPLAYED", "WRONG_STEP", "DOCUMENT_CHANGED"];

let view = null;
let currentDoc = 0;
let messagesTimer = null;

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
  checkCertificates: (client) => findCertificates(client),
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
  await setLanguage(chooseLanguage(view.signer.lang));
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
  for (const item of $("steps").children) {
    if (item.dataset.step === step) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
  for (const name of STEPS) $(`step-${name}`).hidden = name !== step;
  if (step === "consent") renderConsents(view.consents, ["privacy", "terms"]);
  if (step === "enrolment") enrolment.render();
  else enrolment.stop();
  if (step === "documents") {
    renderDocuments();
    enrolment.checkFirstTime();
  }
  if (step === "sign") renderSign();
  if (step === "refused") $("refused-reason").textContent = signer.refusalReason || "";
  const messaging = transaction.messaging && !["done", "refused", "closed"].includes(step);
  $("messaging").hidden = !messaging;
  if (messaging) startMessages(); else stopMessages();
  document.body.dataset.step = step;
  document.body.dataset.ready = "true";
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

// ---------------------------------------------------------------------------- documents

function renderDocuments() {
  const documents = view.documents;
  if (currentDoc >= documents.length) currentDoc = 0;
  renderActiveContent(documents);
  const tabs = documents.map((doc, index) => el("button", {
    type: "button", "aria-pressed": String(index === currentDoc), text: doc.name,
    onclick: () => { currentDoc = index; renderDocuments(); },
  }));
  $("doc-tabs").replaceChildren(...tabs);
  const doc = documents[currentDoc];
  if (!doc) {
    $("pages").replaceChildren(el("p", { text: t("documents.none") }));
    return;
  }
  const images = [];
  for (let n = 1; n <= doc.pages; n++) {
    images.push(el("img", {
      src: `${base}/documents/${encodeURIComponent(doc.id)}/pages/${n}.png?width=800`,
      alt: t("documents.pageAlt", { n, total: doc.pages, name: doc.name }),
      loading: n <= 2 ? "eager" : "lazy", width: "800", height: "1131",
      onerror: () => notice(t("documents.pageFailed", { n, name: doc.name }), "error"),
    }));
  }
  $("pages").replaceChildren(...images);
  $("pages").setAttribute("aria-label", t("documents.pagesOf", { name: doc.name }));
  $("download-one").textContent = t("documents.downloadNamed", { name: doc.name });
}

// What the portal found that could act by itself in a PDF reader (API.md activeContent).
const ACTIVE_CONTENT = {
  javascript: "documents.activeJavascript", "open-action": "documents.activeOpenAction",
  launch: "documents.activeLaunch", "additional-actions": "documents.activeAdditionalActions",
  "embedded-files": "documents.activeEmbeddedFiles", xfa: "documents.activeXfa",
  unchecked: "documents.activeUnchecked",
};

/** The warning shown above the documents, before acceptance, when any holds active content. */
function renderActiveContent(documents) {
  let box = $("active-content");
  if (!box) {
    box = el("div", { id: "active-content", class: "notice", role: "note" });
    box.dataset.kind = "warn";
    $("doc-tabs").before(box);
  }
  const flagged = documents.filter((doc) => (doc.activeContent || []).length > 0);
  box.hidden = flagged.length === 0;
  box.replaceChildren(
    el("p", { text: t("documents.activeContent") }),
    el("ul", {}, ...flagged.map((doc) => el("li", { text: t("documents.activeIn", {
      name: doc.name,
      what: doc.activeContent.map((kind) => (ACTIVE_CONTENT[kind] ? t(ACTIVE_CONTENT[kind]) : kind)).join(", "),
    }) }))),
  );
}

async function download(button, path) {
  await guarded(button, async () => {
    const { blob, filename } = await api("GET", path, { blob: true });
    saveBlob(blob, filename);
  });
}

// ---------------------------------------------------------------------------- signing

function renderSign() {
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

/** Tokens, and the certificates on them sorted by the portal's check: qualified and
 * issued to this signer, or not (someone else's is not usable: portal/API.md). */
async function findCertificates(client) {
  const { tokens } = await client.listTokens();
  const qualified = [];
  const others = [];
  const { credentials } = await client.listCredentials();
  for (const credential of credentials) {
    if (!credential.hasCertificate) continue;
    const info = await client.credentialInfo(credential.credentialID);
    const certificates = (info.cert && info.cert.certificates) || [];
    if (certificates.length === 0) continue;
    const entry = { credentialID: credential.credentialID, tokenID: credential.tokenID,
                    label: credential.label, certificate: certificates[0],
                    chain: certificates.slice(1), check: null, reasons: [] };
    try {
      entry.check = await api("POST", `${base}/certificates/check`,
                              { body: { certificate: entry.certificate, chain: entry.chain } });
      const own = entry.check.ownCertificate !== false;
      (entry.check.qualified && own ? qualified : others).push(entry);
      entry.reasons = entry.check.reasons || [];
    } catch (error) {
      entry.reasons = [explain(error)];
      others.push(entry);
    }
  }
  return { tokens, qualified, others };
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
    ({ qualified, others, tokens } = await findCertificates(client));
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

function holderName(check) {
  return (check && (check.holder || check.commonName || check.subject)) || "?";
}

function reasonText(reason, check = null) {
  if (reason === "CERTIFICATE_NOT_SIGNERS") return t("reason.CERTIFICATE_NOT_SIGNERS", { holder: holderName(check) });
  const key = `reason.${reason}`;
  const text = t(key);
  return text === key ? reason : text;
}

function renderCertificates() {
  const previous = selectedCredential();
  const choices = agent.qualified.map((entry, index) => {
    const subject = entry.check.commonName || entry.check.subject || entry.label || entry.credentialID;
    const input = el("input", { type: "radio", name: "credential", value: entry.credentialID,
                                id: `credential-${index}`,
                                "aria-describedby": `credential-${index}-details` });
    input.checked = previous ? previous.credentialID === entry.credentialID
      : agent.qualified.length === 1;
    input.addEventListener("change", () => { if (session && session.credentialID !== entry.credentialID) dropSession(); });
    const blocked = agent.blocked.has(entry.tokenID);
    return el("label", { class: "choice", for: `credential-${index}` }, input,
      el("span", {},
        el("strong", { text: subject }),
        el("span", { class: "small muted", id: `credential-${index}-details`, text: " " + t("sign.certificateDetails", {
          issuer: entry.check.issuer, from: formatDate(entry.check.notBefore, false),
          until: formatDate(entry.check.notAfter, false), token: entry.label || entry.tokenID,
        }) + (blocked ? " " + t("agentError.PIN_BLOCKED") : "") })));
  });
  $("certificate-choices").replaceChildren(...choices);
  const others = agent.others.map((entry) => el("li", {
    text: `${(entry.check && (entry.check.commonName || entry.check.subject)) || entry.label || entry.credentialID}: ${entry.reasons.map((r) => reasonText(r, entry.check)).join(", ") || t("sign.notQualified")}`,
  }));
  $("not-qualified-list").replaceChildren(...others);
  $("not-qualified").hidden = others.length === 0;
}

function selectedCredential() {
  const checked = document.querySelector('input[name="credential"]:checked');
  return checked ? agent.qualified.find((e) => e.credentialID === checked.value) || null : null;
}

function dropSession() {
  session = null;
  $("otp-step").hidden = true;
  $("otp").value = "";
}

function checkForm() {
  const credential = selectedCredential();
  if (!credential) return [null, t("sign.chooseCertificate")];
  if (agent.blocked.has(credential.tokenID)) return [null, t("agentError.PIN_BLOCKED")];
  if (!$("phone-confirm").checked) return [null, t("sign.confirmPhone")];
  if (!/^[0-9]{4,8}$/.test($("pin").value)) return [null, t("sign.pinFormat")];
  return [credential, null];
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
      const prepared = await api("POST", `${base}/sign/prepare`, {
        body: { certificate: credential.certificate, chain: credential.chain, phoneConfirmed: true },
      });
      session = { ...prepared, credentialID: credential.credentialID, tokenID: credential.tokenID };
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
      const prepared = await api("POST", `${base}/sign/prepare`, {
        body: { certificate: credential.certificate, chain: credential.chain, phoneConfirmed: true },
      });
      session = { ...prepared, credentialID: credential.credentialID, tokenID: credential.tokenID };
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
  if (!session || session.credentialID !== credential.credentialID) {
    signError(t("sign.codeFirst"));
    return;
  }
  say($("sign-error"), "");
  // The PIN leaves the field before any await: nothing on the page holds it afterwards.
  let pin = $("pin").value;
  $("pin").value = "";
  $("otp").value = "";
  const current = session;
  await guarded($("sign-submit"), async () => {
    progress(t("sign.authorizing"));
    let authorization;
    try {
      authorization = await agent.client.authorize({
        credentialID: current.credentialID, hashes: current.hashes, pin, otp,
        otpSession: current.otpSession,
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
    else if (!agent.blocked.has(credential.tokenID)) hint = t("sign.retryFromCode");
    signError(hint ? `${explain(error)} ${hint}` : explain(error));
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

// ---------------------------------------------------------------------------- messaging

function startMessages() {
  if (messagesTimer !== null) return;
  loadMessages();
  messagesTimer = setInterval(() => { if (!document.hidden) loadMessages(); }, 15000);
}

function stopMessages() {
  if (messagesTimer !== null) clearInterval(messagesTimer);
  messagesTimer = null;
}

async function loadMessages() {
  try {
    const { messages } = await api("GET", `${base}/messages`);
    renderThread(messages, "signer");
    say($("message-error"), "");
  } catch (error) {
    if (["MESSAGING_DISABLED", "ALREADY_SIGNED"].includes(error.code)) stopMessages();
    say($("message-error"), explain(error), "error");
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const text = typedMessage("message-text", "message-error");
  if (text === null) return;
  await guarded($("message-send"), async () => {
    await api("POST", `${base}/messages`, { body: { text } });
    $("message-text").value = "";
    await loadMessages();
  }, (error) => {
    say($("message-error"), explain(error), "error");
    return true;
  });
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
  $("download-one").addEventListener("click", () => {
    const doc = view.documents[currentDoc];
    if (doc) download($("download-one"), `${base}/documents/${encodeURIComponent(doc.id)}/download`);
  });
  $("download-all").addEventListener("click", () => download($("download-all"), `${base}/documents.zip`));
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
  $("message-form").addEventListener("submit", sendMessage);
  $("message-refresh").addEventListener("click", () => loadMessages());
  $("waiting-refresh").addEventListener("click", () => guarded($("waiting-refresh"), async () => update(await api("GET", base))));
}

load();
