// tokencode.js: the second factor before a token takes a PIN or PUK (SECURITY #35;
// portal/API.md "First-time signer").
//
// The agent lets a page present a token's PIN or PUK (pin/change, pin/unblock,
// enroll/generate) only on a connection that proved a second factor for that token
// (secondFactor/verify). A first-time signer has no authenticator yet, so the portal
// texts a code bound to the token (enrolment/otp); the agent spends it once with the
// portal and grants the connection the token for a few minutes. The enrolment's PIN and
// certificate steps each hold one code box (ids "<prefix>-code", "<prefix>-code-sent",
// "<prefix>-code-entry", "<prefix>-otp", "<prefix>-send-code").

import { t } from "/static/i18n.js";

const PREFIXES = ["pin", "cert"];
const CODE_RULE = /^[0-9]{6}$/;
// The page asks for a new code a little before the agent's grant ends.
const MARGIN_MS = 15000;

const $ = (id) => document.getElementById(id);

/** The code can no longer be used (expired, used, another token's, locked). */
export function isSpentCode(error) {
  const data = (error && error.data) || {};
  return ["OTP_EXPIRED", "OTP_THROTTLED", "OTP_UNAVAILABLE"].includes(error.code) ||
    (error.code === "INVALID_OTP" && ["replayed", "session", "hashes"].includes(data.reason));
}

function secondFactorRequired(tokenID) {
  return Object.assign(new Error("second factor"), {
    name: "QsignError", code: "SECOND_FACTOR_REQUIRED", data: { tokenID }, attemptsLeft: null,
  });
}

/**
 * requestCode(tokenID) -> {otpSession, phoneMasked, expiresIn}: the portal's
 * enrolment/otp for this signer; showError(text): the step's error region.
 */
export function createTokenCode({ requestCode, showError }) {
  let code = null;   // {tokenID, otpSession, phoneMasked, minutes}: sent, not yet spent
  let grant = null;  // {client, tokenID, until}: this connection may present the PIN
  let timer = null;

  /** Does the agent connection `client` hold the token (any token when not given)? */
  function held(client = null, tokenID = null) {
    return grant !== null && !grant.client.closed && Date.now() < grant.until
      && (client === null || grant.client === client)
      && (tokenID === null || grant.tokenID === tokenID);
  }

  function render() {
    const open = !held();
    for (const prefix of PREFIXES) {
      $(`${prefix}-code`).hidden = !open;
      $(`${prefix}-code-sent`).textContent = code
        ? t("enrol.codeSent", { phone: code.phoneMasked, minutes: code.minutes }) : "";
      $(`${prefix}-code-entry`).hidden = code === null;
      const send = $(`${prefix}-send-code`);
      send.dataset.i18n = code ? "enrol.codeResend" : "enrol.codeSend";
      send.textContent = t(send.dataset.i18n);
      if (!code) $(`${prefix}-otp`).value = "";
    }
  }

  /** Text a new code for `tokenID` (the portal throttles); the box of `prefix` shows it. */
  async function send(prefix, tokenID) {
    const sent = await requestCode(tokenID);
    code = { tokenID, otpSession: sent.otpSession, phoneMasked: sent.phoneMasked,
             minutes: Math.max(1, Math.round((sent.expiresIn || 300) / 60)) };
    render();
    $(`${prefix}-otp`).focus();
  }

  /** Before the PINs leave their fields: is the code there when one is needed? Else
   * say what is missing and focus it. */
  function ready(prefix) {
    if (held()) return true;
    render();  // a grant that ran out shows its box again
    let missing = null;
    if (code === null) missing = "enrol.codeFirst";
    else if (!CODE_RULE.test($(`${prefix}-otp`).value.replace(/\s/g, ""))) missing = "enrol.codeFormat";
    if (missing === null) return true;
    showError(t(missing));
    focus(prefix, missing);
    return false;
  }

  /** Focus what `next` (an i18n key from ready or failed) asks; false if nothing. */
  function focus(prefix, next) {
    if (next === "enrol.codeFirst" || next === "enrol.codeNew") $(`${prefix}-send-code`).focus();
    else if (next === "enrol.codeFormat" || next === "enrol.codeRetype") $(`${prefix}-otp`).focus();
    else return false;
    return true;
  }

  /** The typed code, out of its field ("" while a grant is held). */
  function take(prefix) {
    const field = $(`${prefix}-otp`);
    const typed = field.value.replace(/\s/g, "");
    field.value = "";
    return held() ? "" : typed;
  }

  /** The grant for `tokenID` on `client`, spending the typed code when there is none. */
  async function prove(client, tokenID, otp) {
    if (held(client, tokenID)) return;
    if (code === null || code.tokenID !== tokenID || !otp) throw secondFactorRequired(tokenID);
    const proof = await client.secondFactorVerify({ tokenID, otp, otpSession: code.otpSession });
    code = null;
    grant = { client, tokenID, until: Date.now() + proof.expiresIn * 1000 - MARGIN_MS };
    clearTimeout(timer);
    timer = setTimeout(render, Math.max(0, grant.until - Date.now()));
    render();
  }

  /** After a failed call: what the person does next (an i18n key), or null. */
  function failed(error) {
    if (!error || error.name !== "QsignError") return null;
    if (error.code === "SECOND_FACTOR_REQUIRED" || error.code === "CONNECTION_CLOSED") {
      grant = null;
      render();
      return error.code === "SECOND_FACTOR_REQUIRED" ? "enrol.codeNew" : null;
    }
    if (isSpentCode(error)) {
      code = null;
      render();
      return "enrol.codeNew";
    }
    if (error.code === "INVALID_OTP") return "enrol.codeRetype";
    return null;
  }

  return { render, send, ready, focus, take, prove, failed, held };
}
