// enrolment-token.js: the first-time signer's token steps (enrolment.js draws the others):
// its PIN, after an SMS code bound to the token (tokencode.js), through the agent's
// pin/change or pin/unblock; then the certificate request authorised, the key made on
// the token (enroll/generate), the portal's identity evidence for that key, the CA's
// certificate written to the token (enroll/complete) and registered with the portal.
//
// PINs go to the agent only. Each PIN field is emptied before the agent is called and
// the page keeps no reference to a PIN after the call (JS strings cannot be wiped).

import { ApiError, el, explain } from "/static/api.js";
import { explainIdentity } from "/static/capture.js";
import { formatDate, has, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
const PHASES = ["generate", "evidence", "complete", "register"];
const PIN_RULE = /^[0-9]{4,8}$/;
const PUK_RULE = /^[0-9]{6,8}$/;

/**
 * ctx: enrolment.js's context (guarded, update, notice, openAgent, checkCertificates);
 * enrolError(text), post(step, body) and codes (tokencode.js) are enrolment.js's.
 */
export function createTokenSteps(ctx, { enrolError, post, codes }) {
  let pinChanged = false;       // pin/change done, pin-set still to tell the portal
  let pukMode = false;          // the PIN is blocked: the PUK sets the new one
  const run = { phase: null, tokenID: null, enrolmentID: null, publicKey: null,
                evidence: null, issued: null, failed: null };

  // ---------------------------------------------------------------- the token and its PIN

  /** The token to enrol: the first one without a qualified certificate. */
  async function enrolToken(client) {
    const found = await ctx.checkCertificates(client);
    const withQualified = new Set(found.qualified.map((c) => c.tokenID));
    const candidates = found.tokens.filter((tk) => !withQualified.has(tk.id));
    const token = candidates.find((tk) => tk.id === run.tokenID) || candidates[0] || null;
    run.tokenID = token ? token.id : null;
    return token;
  }

  async function renderPin() {
    codes.render();
    const line = $("pin-token");
    const client = await ctx.openAgent();
    if (!client) {
      line.textContent = t("agentError.AGENT_UNREACHABLE");
      return;
    }
    try {
      const token = await enrolToken(client);
      line.textContent = token ? t("enrol.pinToken", { token: token.label || token.id }) : t("enrol.insertToken");
      if (token && token.pinBlocked) setPukMode(true);
    } catch (error) {
      line.textContent = explain(error);
    }
    if (pinChanged) line.textContent += ` ${t("enrol.pinAlreadySet")}`;
  }

  function setPukMode(on) {
    pukMode = on;
    $("puk-box").hidden = !on;
    $("old-pin-box").hidden = on;
    document.body.dataset.pinMode = on ? "puk" : "pin";
  }

  async function submitPin(event) {
    event.preventDefault();
    if (pinChanged) {
      // The token already has the new PIN: only the portal is still to be told.
      await ctx.guarded($("pin-submit"), async () => {
        ctx.update(await post("pin-set"));
        pinChanged = false;
      }, (error) => { enrolError(explain(error)); return true; });
      return;
    }
    const fields = [pukMode ? "puk" : "old-pin", "new-pin", "new-pin-2"].map($);
    const [oldField, newField, againField] = fields;
    if (!(pukMode ? PUK_RULE : PIN_RULE).test(oldField.value)) {
      enrolError(t(pukMode ? "enrol.pukFormat" : "enrol.oldPinFormat"));
      oldField.focus();
      return;
    }
    if (!PIN_RULE.test(newField.value)) {
      enrolError(t("enrol.newPinFormat"));
      newField.value = "";
      againField.value = "";
      newField.focus();
      return;
    }
    if (newField.value !== againField.value) {
      enrolError(t("enrol.pinMismatch"));
      newField.value = "";
      againField.value = "";
      newField.focus();
      return;
    }
    if (!pukMode && oldField.value === newField.value) {
      enrolError(t("enrol.pinSame"));
      newField.value = "";
      againField.value = "";
      newField.focus();
      return;
    }
    if (!codes.ready("pin")) return;
    enrolError("");
    // The PINs leave the fields before any await.
    let pin = oldField.value;
    let newPin = newField.value;
    for (const field of fields) field.value = "";
    const otp = codes.take("pin");
    await ctx.guarded($("pin-submit"), async () => {
      const client = await ctx.openAgent();
      if (!client) throw Object.assign(new Error("agent"), { name: "QsignError", code: "AGENT_UNREACHABLE", data: {} });
      const token = await enrolToken(client);
      if (!token) throw Object.assign(new Error("token"), { name: "QsignError", code: "TOKEN_NOT_FOUND", data: {} });
      try {
        await codes.prove(client, token.id, otp);
        if (pukMode) await client.unblockPin({ tokenID: token.id, puk: pin, newPin });
        else await client.changePin({ tokenID: token.id, pin, newPin });
      } finally {
        pin = null;
        newPin = null;
      }
      pinChanged = true;
      ctx.update(await post("pin-set"));
      pinChanged = false;
    }, (error) => {
      pin = null;
      newPin = null;
      let text = explain(error);
      if (pukMode && error.code === "INVALID_PIN") {
        // RESET RETRY COUNTER checks the PUK: its tries, not the PIN's.
        text = error.attemptsLeft === null ? t("enrol.wrongPukNoCount")
          : t("enrol.wrongPuk", { attemptsLeft: error.attemptsLeft });
      } else if (!pukMode && (error.code === "PIN_BLOCKED"
                              || (error.code === "INVALID_PIN" && error.attemptsLeft === 0))) {
        setPukMode(true);
        text += ` ${t("enrol.pukNow")}`;
      }
      if (pinChanged) text += ` ${t("enrol.pinAlreadySet")}`;
      const next = codes.failed(error);
      if (next) text += ` ${t(next)}`;
      enrolError(text);
      if (!codes.focus("pin", next)) (pukMode ? $("puk") : oldField).focus();
      return true;
    });
  }

  /** The signer asks for the SMS code (the pin or cert box). */
  async function sendCode(prefix) {
    enrolError("");
    await ctx.guarded($(`${prefix}-send-code`), async () => {
      const client = await ctx.openAgent();
      if (!client) throw Object.assign(new Error("agent"), { name: "QsignError", code: "AGENT_UNREACHABLE", data: {} });
      const token = await enrolToken(client);
      if (!token) throw Object.assign(new Error("token"), { name: "QsignError", code: "TOKEN_NOT_FOUND", data: {} });
      await codes.send(prefix, token.id);
    }, (error) => { enrolError(explain(error)); return true; });
  }

  // ---------------------------------------------------------------- the certificate

  function renderRequest(e) {
    const request = e.request;
    const facts = [];
    if (request) {
      const s = request.subject || {};
      facts.push(
        [t("enrol.requestName"), s.commonName],
        [t("enrol.requestGivenName"), s.givenName],
        [t("enrol.requestSurname"), s.surname],
        [t("enrol.requestCountry"), s.country],
        [t("enrol.requestSerial"), s.serialNumber],
        [t("enrol.requestPolicy"), request.policy],
        [t("enrol.requestValidity"), t("enrol.requestYears", { years: request.validityYears })],
        [t("enrol.requestKeyUsage"), `${request.keyUsage} — ${t("enrol.requestKeyUsageText")}`],
        [t("enrol.requestKey"), t("enrol.requestKeyText")],
        [t("enrol.requestIssuer"), request.issuer]);
    }
    $("request-facts").replaceChildren(...facts.flatMap(([label, value]) => [
      el("dt", { text: label }), el("dd", { text: value ?? "—" })]));
    renderProgress();
  }

  function renderProgress() {
    const list = $("enrol-progress");
    list.hidden = run.phase === null && run.failed === null;
    for (const item of list.children) {
      const index = PHASES.indexOf(item.dataset.phase);
      const at = PHASES.indexOf(run.failed || run.phase || "generate");
      let state = "todo";
      if (index < at || run.phase === "finished") state = "done";
      else if (index === at) state = run.failed ? "failed" : "active";
      item.dataset.state = state;
      item.setAttribute("aria-current", state === "active" ? "step" : "false");
    }
    $("enrol-retry-actions").hidden = run.failed === null;
    // The PIN is asked only while the key is still to be made.
    const pinNeeded = run.publicKey === null;
    $("enrol-pin-box").hidden = !pinNeeded;
    $("request-submit").hidden = run.failed !== null;
    codes.render();
    if (run.phase && run.phase !== "finished") document.body.dataset.enrolPhase = run.phase;
    else delete document.body.dataset.enrolPhase;
    if (run.failed) document.body.dataset.enrolFailed = run.failed;
    else delete document.body.dataset.enrolFailed;
  }

  function explainEnrolment(error) {
    if (error && error.name === "QsignError" && error.code === "ENROLMENT_REFUSED") {
      const reason = error.data && error.data.reason;
      const key = `caReason.${reason}`;
      return t("enrol.caRefused", { reason: reason && has(key) ? t(key) : t("caReason.unknown", { code: reason || "?" }) });
    }
    if (error && error.name === "ApiError" && error.body && error.body.reason && has(`error.${error.body.reason}`)) {
      return explainIdentity(new ApiError(error.body.reason, error.status, error.body));
    }
    return explain(error);
  }

  async function authorise(event) {
    event.preventDefault();
    if (!$("request-accept").checked) {
      enrolError(t("enrol.requestAcceptFirst"));
      $("request-accept").focus();
      return;
    }
    await certify();
  }

  /** The four phases, resumed from the one that failed. */
  async function certify() {
    const needsPin = run.publicKey === null;
    const pinField = $("enrol-pin-input");
    if (needsPin && !PIN_RULE.test(pinField.value)) {
      enrolError(t("enrol.requestPinFormat"));
      pinField.focus();
      return;
    }
    if (needsPin && !codes.ready("cert")) return;
    enrolError("");
    let pin = needsPin ? pinField.value : null;
    pinField.value = "";
    const otp = needsPin ? codes.take("cert") : "";
    run.failed = null;
    $("enrol-retry-actions").hidden = true;
    await ctx.guarded($("request-submit"), async () => {
      const client = await ctx.openAgent();
      if (!client) throw Object.assign(new Error("agent"), { name: "QsignError", code: "AGENT_UNREACHABLE", data: {} });
      if (run.publicKey === null) {
        run.phase = "generate";
        renderProgress();
        const token = await enrolToken(client);
        if (!token) throw Object.assign(new Error("token"), { name: "QsignError", code: "TOKEN_NOT_FOUND", data: {} });
        let generated;
        await codes.prove(client, token.id, otp);
        document.body.dataset.enrolCall = "enroll/generate";  // the token is at work
        try {
          generated = await client.enrollGenerate({ tokenID: token.id, pin });
        } finally {
          pin = null;
          delete document.body.dataset.enrolCall;
        }
        run.enrolmentID = generated.enrolmentID;
        run.publicKey = generated.publicKey;
      }
      pin = null;
      if (run.evidence === null) {
        run.phase = "evidence";
        renderProgress();
        const { evidence } = await post("evidence", { publicKey: run.publicKey, accept: true });
        run.evidence = evidence;
      }
      if (run.issued === null) {
        run.phase = "complete";
        renderProgress();
        run.issued = await client.enrollComplete({ enrolmentID: run.enrolmentID, evidence: run.evidence });
      }
      run.phase = "register";
      renderProgress();
      const view = await post("certificate", { certificate: run.issued.certificate, chain: run.issued.chain });
      run.phase = "finished";
      renderProgress();
      ctx.notice(t("enrol.finished", { until: formatDate(run.issued.notAfter, false) }), "ok");
      Object.assign(run, { phase: null, enrolmentID: null, publicKey: null, evidence: null, issued: null });
      ctx.update(view);
    }, (error) => {
      pin = null;
      run.failed = run.phase || "generate";
      run.phase = null;
      if (run.failed === "generate") {
        // Nothing usable came back: the agent resumes a pending key, or makes it anew.
        run.enrolmentID = null;
        run.publicKey = null;
      }
      renderProgress();
      let text = explainEnrolment(error);
      const next = codes.failed(error);
      if (next) text += ` ${t(next)}`;
      else if (run.failed === "generate") text += ` ${t("enrol.retryPin")}`;
      enrolError(text);
      if (!codes.focus("cert", next)) $("enrol-retry").focus();
      return true;
    });
  }

  function wire() {
    $("enrol-pin").addEventListener("submit", submitPin);
    $("pin-send-code").addEventListener("click", () => sendCode("pin"));
    $("cert-send-code").addEventListener("click", () => sendCode("cert"));
    $("enrol-certificate").addEventListener("submit", authorise);
    $("enrol-retry").addEventListener("click", () => certify());
  }

  return { wire, renderPin, renderRequest };
}
