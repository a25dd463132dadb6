// totp.js: enrolling a TOTP second factor (RFC 6238) from a session that must have one
// before it is signed in (stage "enrol"): a fresh key from the portal, shown as a QR
// code and as text, confirmed by a code the app makes. Used by /signin and /join.

import { api, explain, say } from "/static/api.js";
import { t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);

/** Show the enrolment step; resolves once the factor is active (the session is done). */
export async function enrolTotp(notice) {
  const view = await api("GET", "/api/auth/session");
  const fresh = await api("GET", "/api/account/totp/new");
  $("enrol-qr").src = fresh.qr;
  $("enrol-secret").textContent = fresh.secret;
  $("enrol-step").hidden = false;
  $("enrol-code").focus();
  return new Promise((resolve) => {
    $("enrol-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const code = $("enrol-code").value.trim();
      if (!/^[0-9]{6}$/.test(code)) {
        say(notice, t("account.codeFormat"), "error");
        return;
      }
      try {
        await api("POST", "/api/account/totp", { body: { secret: fresh.secret, code }, csrf: view.csrf });
        $("enrol-step").hidden = true;
        resolve();
      } catch (error) {
        say(notice, explain(error), "error");
      }
    });
  });
}
