// enrolment.js: the first-time signer (issue 7; portal/API.md "First-time signer").
//
// Between the consents and the documents, for a signer whose tokens hold no qualified
// certificate: personal data -> issuance and Personal Space consents -> identity
// (capture.js) -> the extracted data confirmed -> names and phone for the certificate
// -> an SMS code for the token (tokencode.js), then its PIN (agent pin/change) -> the
// certificate request authorised, then the agent makes the key on the token
// (enroll/generate, within the code's grant), the portal gives the identity evidence for
// that key, the agent has the CA issue the certificate and writes it to the token
// (enroll/complete), and the portal registers it.
//
// PINs go to the agent only. Each PIN field is emptied before the agent is called and
// the page keeps no reference to a PIN after the call (JS strings cannot be wiped).

import { ApiError, api, e164, el, explain, say } from "/static/api.js";
import { IdentityCapture, explainIdentity } from "/static/capture.js";
import { formatDate, has, language, t } from "/static/i18n.js";
import { renderConsents } from "/static/legal.js";
import { createTokenCode } from "/static/tokencode.js";

const $ = (id) => document.getElementById(id);
const SUBSTEPS = ["personal-data", "issuance-consents", "identity", "identity-confirm",
                  "auth-data", "pin", "certificate"];
const PHASES = ["generate", "evidence", "complete", "register"];
const PIN_RULE = /^[0-9]{4,8}$/;
const PUK_RULE = /^[0-9]{6,8}$/;

/**
 * ctx (from signer.js): {base, view(), update(view), guarded(button, action, onError),
 * handle(error, region), openAgent() -> client|null, checkCertificates(client) ->
 * {tokens, qualified, others}}
 */
export function createEnrolment(ctx) {
  let capture = null;           // IdentityCapture of the current identity session
  let chooseDocument = false;   // the person asked for another document
  let pinChanged = false;       // pin/change done, pin-set still to tell the portal
  let pukMode = false;          // the PIN is blocked: the PUK sets the new one
  let detection = null;         // the running first-time check (a Promise)
  let checkedFirstTime = false;
  let shownSub = null;          // the sub-step drawn last
  const run = { phase: null, tokenID: null, enrolmentID: null, publicKey: null,
                evidence: null, issued: null, failed: null };

  const enrolError = (text) => say($("enrol-error"), text, text ? "error" : "info");
  const post = (step, body = {}) => api("POST", `${ctx.base}/enrolment/${step}`, { body });
  // The SMS code before the token takes a PIN or PUK (tokencode.js).
  const codes = createTokenCode({ requestCode: (tokenID) => post("otp", { tokenID }),
                                  showError: enrolError });

  // ---------------------------------------------------------------- first-time check

  /** At the documents step: no qualified certificate on the tokens -> start enrolment. */
  function checkFirstTime() {
    const view = ctx.view();
    if (checkedFirstTime || detection) return detection;
    if (view.enrolment && view.enrolment.step === "done") return null;
    detection = (async () => {
      const box = $("token-check");
      say(box, t("enrol.checking"));
      document.body.dataset.firstTime = "checking";
      const client = await ctx.openAgent();
      if (!client) {
        say(box, "");
        document.body.dataset.firstTime = "unknown";
        return;
      }
      let found;
      try {
        found = await ctx.checkCertificates(client);
      } catch (error) {
        say(box, explain(error), "error");
        document.body.dataset.firstTime = "unknown";
        return;
      }
      if (found.tokens.length === 0) {
        say(box, t("enrol.insertToken"), "warn");
        document.body.dataset.firstTime = "no-token";
        return;
      }
      checkedFirstTime = true;
      if (found.qualified.length > 0) {
        say(box, "");
        document.body.dataset.firstTime = "no";
        return;
      }
      // Someone else's qualified certificate: say whose and offer enrolment, no more.
      const foreign = found.others.find((e) => e.check && e.check.qualified && e.check.ownCertificate === false);
      if (foreign) {
        document.body.dataset.firstTime = "not-theirs";
        say(box, t("sign.notYourCertificate", { holder: foreign.check.holder || "?" }), "warn");
        $("token-check-actions").hidden = false;
        return;
      }
      document.body.dataset.firstTime = "yes";
      say(box, t("enrol.firstTime"), "warn");
      $("token-check-actions").hidden = false;
      await start();
    })().finally(() => { detection = null; });
    return detection;
  }

  /** A token came or went while the documents are shown: check again. */
  function tokenEvent() {
    if (ctx.view().step === "documents" && !checkedFirstTime) checkFirstTime();
  }

  /** enrolment/start, from the documents step or (button, region) of the sign step. */
  async function start(button = $("enrol-start"), region = $("token-check")) {
    await ctx.guarded(button, async () => {
      ctx.update(await post("start"));
      say(region, "");
      $("token-check-actions").hidden = true;
    }, (error) => {
      say(region, explain(error), "error");
      if (region === $("token-check")) $("token-check-actions").hidden = false;
      return true;
    });
  }

  // ---------------------------------------------------------------- rendering

  function render() {
    const e = ctx.view().enrolment;
    if (!e) return;
    const sub = e.step === "done" ? "certificate" : e.step;
    for (const item of $("enrol-steps").children) {
      const index = SUBSTEPS.indexOf(item.dataset.sub);
      const current = SUBSTEPS.indexOf(sub);
      if (item.dataset.sub === sub) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
      item.dataset.state = index < current ? "done" : index === current ? "current" : "todo";
    }
    for (const name of SUBSTEPS) $(`enrol-${name}`).hidden = name !== sub;
    if (shownSub !== null && shownSub !== sub) {
      ctx.notice("");  // a message about the previous sub-step
      enrolError("");
    }
    shownSub = sub;
    document.body.dataset.enrolment = e.step;
    if (sub === "personal-data") renderPersonalData(e);
    if (sub === "issuance-consents") renderConsents(e.consents, ["issuance", "space"]);
    if (sub === "identity") renderIdentity(e);
    else stopCapture();
    if (sub === "identity-confirm") renderConfirm(e);
    if (sub === "auth-data") renderAuthData(e);
    if (sub === "pin") renderPin();
    if (sub === "certificate") renderRequest(e);
  }

  // ---------------------------------------------------------------- personal data

  function renderPersonalData(e) {
    $("pd-name").textContent = e.data.name || t("enrol.notGiven");
    $("pd-phone").textContent = e.data.phone || t("enrol.notGiven");
  }

  function openCorrection() {
    const e = ctx.view().enrolment;
    $("pd-name-input").value = e.data.name || "";
    $("pd-phone-input").value = e.data.phone || "";
    $("pd-form").hidden = false;
    $("pd-name-input").focus();
  }

  /** The phone typed in `input` (E.164), or null once the page has said it is not. */
  function typedPhone(input) {
    const phone = e164($(input).value);
    if (phone === null) {
      enrolError(t("enrol.phoneFormat"));
      $(input).focus();
    }
    return phone;
  }

  async function saveCorrection(event) {
    event.preventDefault();
    const name = $("pd-name-input").value.trim().replace(/\s+/g, " ");
    if (name.length < 2) {
      enrolError(t("enrol.nameMissing"));
      $("pd-name-input").focus();
      return;
    }
    const phone = typedPhone("pd-phone-input");
    if (phone === null) return;
    enrolError("");
    await ctx.guarded($("pd-save"), async () => {
      const reply = await post("personal-data", { correct: false, name, phone });
      if (reply.inviteUrl) {
        // The old link is revoked: carry on at the new one (also e-mailed).
        const next = new URL(reply.inviteUrl, location.origin);
        next.searchParams.set("lang", language());
        next.searchParams.set("corrected", "1");
        location.assign(next.pathname + next.search);
        return;
      }
      ctx.update(reply);
    }, (error) => { enrolError(explain(error)); return true; });
  }

  // ---------------------------------------------------------------- consents

  async function submitConsents(event) {
    event.preventDefault();
    if (!$("consent-issuance").checked || !$("consent-space").checked) {
      enrolError(t("enrol.consentsRequired"));
      return;
    }
    enrolError("");
    const accepted = ctx.view().enrolment.consents.map(({ kind, version, sha256 }) => ({ kind, version, sha256 }));
    await ctx.guarded($("enrol-consents-submit"), async () => {
      ctx.update(await post("consents", { accepted }));
    }, (error) => { enrolError(explain(error)); return true; });
  }

  // ---------------------------------------------------------------- identity

  function renderIdentity(e) {
    const sid = e.identitySession;
    const choosing = !sid || chooseDocument;
    $("document-form").hidden = !choosing;
    $("capture").hidden = choosing;
    $("identity-restart-actions").hidden = choosing;
    if (choosing) {
      stopCapture();
      return;
    }
    if (capture && capture.sid === sid) return;
    stopCapture();
    capture = new IdentityCapture($("capture"), {
      session: sid, handoff: true,
      onVerified: () => identityDone(),
      onLocked: () => { $("identity-restart-actions").hidden = false; },
    });
    capture.start();
  }

  function stopCapture() {
    if (capture) capture.stop();
    capture = null;
  }

  async function openIdentity(event) {
    event.preventDefault();
    const chosen = document.querySelector('input[name="document"]:checked');
    const document_ = chosen ? chosen.value : "id-card";
    enrolError("");
    await ctx.guarded($("document-start"), async () => {
      const reply = await post("identity", { document: document_ });
      chooseDocument = false;
      stopCapture();
      ctx.update(reply);
    }, (error) => { enrolError(explain(error)); return true; });
  }

  /** The identity service verified the session (here or on the phone): tell the portal.
   * Not behind the page's busy guard: this must happen whatever else is running. */
  async function identityDone() {
    enrolError("");
    try {
      ctx.update(await post("identity-done"));
    } catch (error) {
      enrolError(explain(error));
      $("identity-restart-actions").hidden = false;
    }
  }

  // ---------------------------------------------------------------- extracted data

  function renderConfirm(e) {
    const id = e.identity || {};
    const comparison = e.comparison || { matches: true, differences: [] };
    const requested = (e.data.name || "").trim();
    const cut = requested.lastIndexOf(" ");
    const requestedGiven = cut > 0 ? requested.slice(0, cut) : "";
    const requestedSurname = cut > 0 ? requested.slice(cut + 1) : requested;
    const rows = [
      ["givenNames", t("enrol.fieldGivenNames"), id.givenNames, requestedGiven],
      ["surname", t("enrol.fieldSurname"), id.surname, requestedSurname],
      ["birthDate", t("enrol.fieldBirthDate"), formatDate(id.birthDate, false), null],
      ["nationality", t("enrol.fieldNationality"), id.nationality, null],
      ["document", t("enrol.fieldDocument"), `${t(id.documentType === "passport" ? "enrol.documentPassportShort" : "enrol.documentIdCardShort")} ${id.documentNumber || ""}`, null],
      ["expiry", t("enrol.fieldExpiry"), formatDate(id.expiry, false), null],
    ];
    $("compare-body").replaceChildren(...rows.map(([key, label, doc, req]) => {
      const differs = comparison.differences.includes(key);
      return el("tr", { "data-field": key, class: differs ? "diff" : null },
        el("th", { scope: "row", text: label }),
        el("td", { text: doc || "—", "data-label": t("enrol.compareDocument") }),
        el("td", { "data-label": t("enrol.compareRequester") }, req === null ? el("span", { class: "muted", text: t("enrol.notAsked") }) : (req || "—"),
           differs ? el("strong", { class: "diff-mark", text: ` ${t("enrol.differs")}` }) : null));
    }));
    const box = $("confirm-mismatch");
    if (comparison.matches) say(box, "");
    else say(box, t("enrol.mismatch"), "warn");
  }

  async function confirmIdentity(correct, button) {
    enrolError("");
    await ctx.guarded(button, async () => {
      ctx.update(await post("identity-confirm", { correct }));
      if (!correct) chooseDocument = true;
      render();
    }, (error) => {
      enrolError(error.code === "IDENTITY_MISMATCH" ? `${explain(error)} ${t("enrol.mismatchHint")}` : explain(error));
      return true;
    });
  }

  // ---------------------------------------------------------------- names and phone

  function renderAuthData(e) {
    const id = e.identity || {};
    const chosen = e.auth || null;
    const fill = (root, words, picked, prefix) => {
      const current = new Set(root.querySelectorAll("input:checked").length
        ? [...root.querySelectorAll("input:checked")].map((i) => i.value) : (picked || words));
      root.replaceChildren(...words.map((word, index) => {
        const input = el("input", { type: "checkbox", id: `${prefix}-${index}`, value: word });
        input.checked = current.has(word);
        input.addEventListener("change", () => authPreview());
        return el("label", { class: "choice", for: `${prefix}-${index}` }, input, el("span", { text: word }));
      }));
    };
    if (!$("given-choices").dataset.for || $("given-choices").dataset.for !== id.documentNumber) {
      $("given-choices").replaceChildren();
      $("surname-choices").replaceChildren();
      $("given-choices").dataset.for = id.documentNumber || "";
    }
    fill($("given-choices"), id.givenNameChoices || [], chosen && chosen.givenNames.split(" "), "given");
    fill($("surname-choices"), id.surnameChoices || [], chosen && chosen.surname.split(" "), "surname");
    if (!$("auth-phone").value) $("auth-phone").value = (chosen && chosen.phone) || e.data.phone || "";
    authPreview();
  }

  function picked(root) {
    return [...root.querySelectorAll("input:checked")].map((i) => i.value);
  }

  function authPreview() {
    const given = picked($("given-choices"));
    const surname = picked($("surname-choices"));
    $("auth-preview").textContent = given.length && surname.length
      ? t("enrol.authPreview", { name: `${given.join(" ")} ${surname.join(" ")}` }) : t("enrol.authChoose");
  }

  async function submitAuthData(event) {
    event.preventDefault();
    const givenNames = picked($("given-choices")).join(" ");
    const surname = picked($("surname-choices")).join(" ");
    if (!givenNames || !surname) {
      enrolError(t("enrol.authChoose"));
      return;
    }
    const phone = typedPhone("auth-phone");
    if (phone === null) return;
    enrolError("");
    await ctx.guarded($("auth-submit"), async () => {
      ctx.update(await post("auth-data", { givenNames, surname, phone }));
    }, (error) => { enrolError(explain(error)); return true; });
  }

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

  // ---------------------------------------------------------------- wiring

  function wire() {
    $("enrol-start").addEventListener("click", () => start());
    $("pd-yes").addEventListener("click", () => ctx.guarded($("pd-yes"), async () => {
      enrolError("");
      ctx.update(await post("personal-data", { correct: true }));
    }, (error) => { enrolError(explain(error)); return true; }));
    $("pd-no").addEventListener("click", openCorrection);
    $("pd-cancel").addEventListener("click", () => { $("pd-form").hidden = true; $("pd-no").focus(); });
    $("pd-form").addEventListener("submit", saveCorrection);
    $("enrol-issuance-consents").addEventListener("submit", submitConsents);
    $("document-form").addEventListener("submit", openIdentity);
    $("identity-restart").addEventListener("click", () => {
      chooseDocument = true;
      stopCapture();
      render();
      $("doc-id-card").focus();
    });
    $("confirm-yes").addEventListener("click", () => confirmIdentity(true, $("confirm-yes")));
    $("confirm-no").addEventListener("click", () => confirmIdentity(false, $("confirm-no")));
    $("enrol-auth-data").addEventListener("submit", submitAuthData);
    $("enrol-pin").addEventListener("submit", submitPin);
    $("pin-send-code").addEventListener("click", () => sendCode("pin"));
    $("cert-send-code").addEventListener("click", () => sendCode("cert"));
    $("enrol-certificate").addEventListener("submit", authorise);
    $("enrol-retry").addEventListener("click", () => certify());
    if (new URLSearchParams(location.search).get("corrected") === "1") {
      ctx.notice(t("enrol.corrected"), "ok");
    }
  }

  return { wire, render, checkFirstTime, tokenEvent, start, stop: stopCapture };
}
