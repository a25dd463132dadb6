// signer-factor.js: the second factor the transaction asks (portal/API.md "Transaction
// parameters", secondFactor). "sms": the portal texts a code through the agent
// (credentials/sendOTP with the prepared otpSession). "totp": the code of the
// authenticator the signer enrolled for this token in the agent (otp/enrol, under the
// agent's second-factor rules), which the agent checks alone: nothing is sent, no
// phone is confirmed, and authorize goes without an otpSession.

import { t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);

export function byTotp(view) {
  return Boolean(view && view.transaction && view.transaction.secondFactor === "totp");
}

function label(element, key) {
  element.dataset.i18n = key;  // kept on a language change
  element.textContent = t(key);
}

/** The authentication steps the factor has; with TOTP the code field from the start. */
export function showFactor(view) {
  const totp = byTotp(view);
  $("phone-confirm").closest("label").hidden = totp;
  $("send-otp").closest(".actions").hidden = totp;
  $("resend-otp").hidden = totp;
  label($("otp-step").querySelector("legend"), totp ? "sign.totpLegend" : "sign.otpLegend");
  if (totp) {
    label($("otp-sent"), "sign.totpHint");
    $("otp-step").hidden = false;
  }
}

/** The code's part of credentials/authorize: the SMS session only when there is one. */
export function codeParams(session, otp) {
  return session.otpSession ? { otp, otpSession: session.otpSession } : { otp };
}

/** What to tell the signer when the agent has no authenticator for the token. */
export function factorProblem(error) {
  const reason = (error.data || {}).reason;
  return error.code === "INVALID_OTP" && reason === "not-enrolled" ? t("sign.totpNotEnrolled") : null;
}
