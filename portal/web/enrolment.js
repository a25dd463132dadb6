// enrolment.js: the first-time signer (issue 7; portal/API.md "First-time signer").
//
// Between the consents and the documents, for a signer whose tokens hold no qualified
// certificate: personal data -> issuance and Personal Space consents -> identity
// (capture.js) -> the extracted data confirmed -> names and phone for the certificate
// -> an SMS code for the token (tokencode.js), then its PIN (agent pin/change) -> the
// certificate request authorised, then the agent makes the key on the token
// (enroll/generate, within the code's grant), the portal gives the identity evidence for
// that key, the agent has the CA issue the certificate and writes it to the token
// (enroll/complete), and the portal registers it. The token's steps (PIN, certificate)
// are enrolment-token.js.
//
// PINs go to the agent only. Each PIN field is emptied before the agent is called and
// the page keeps no reference to a PIN after the call (JS strings cannot be wiped).

import { api, e164, el, explain, say } from "/static/api.js";
import { IdentityCapture } from "/static/capture.js";
import { createTokenSteps } from "/static/enrolment-token.js";
import { formatDate, language, t } from "/static/i18n.js";
import { renderConsents } from "/static/legal.js";
import { createTokenCode } from "/static/tokencode.js";

const $ = (id) => document.getElementById(id);
const SUBSTEPS = ["personal-data", "issuance-consents", "identity", "identity-confirm",
                  "auth-data", "pin", "certificate"];

/**
 * ctx (from signer.js): {base, view(), update(view), guarded(button, action, onError),
 * handle(error, region), openAgent() -> client|null, checkCertificates(client) ->
 * {tokens, qualified, others}}
 */
export function createEnrolment(ctx) {
  let capture = null;           // IdentityCapture of the current identity session
  let chooseDocument = false;   // the person asked for another document
  let detection = null;         // the running first-time check (a Promise)
  let checkedFirstTime = false;
  let shownSub = null;          // the sub-step drawn last

  const enrolError = (text) => say($("enrol-error"), text, text ? "error" : "info");
  const post = (step, body = {}) => api("POST", `${ctx.base}/enrolment/${step}`, { body });
  // The SMS code before the token takes a PIN or PUK (tokencode.js).
  const codes = createTokenCode({ requestCode: (tokenID) => post("otp", { tokenID }),
                                  showError: enrolError });
  const tokenSteps = createTokenSteps(ctx, { enrolError, post, codes });

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
    if (sub === "pin") tokenSteps.renderPin();
    if (sub === "certificate") tokenSteps.renderRequest(e);
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
    tokenSteps.wire();
    if (new URLSearchParams(location.search).get("corrected") === "1") {
      ctx.notice(t("enrol.corrected"), "ok");
    }
  }

  return { wire, render, checkFirstTime, tokenEvent, start, stop: stopCapture };
}
