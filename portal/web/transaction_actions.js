// transaction_actions.js: the requester's actions on an open transaction, drawn into the
// requester page's detail (portal/API.md "Transaction parameters"): cancel it, send a
// signer's invitation again, put someone else in the place of a signer who has not
// signed. `call(method, path, options)` is the page's API caller; `done(tx)` redraws.

import { el, explain, say } from "/static/api.js";
import { t } from "/static/i18n.js";

const PENDING = ["invited", "consented", "accepted"];

function path(tx, rest = "") {
  return `/api/v1/transactions/${encodeURIComponent(tx.id)}${rest}`;
}

async function act(button, report, work) {
  button.disabled = true;
  try {
    await work();
  } catch (error) {
    say(report, explain(error), "error");
    button.disabled = false;
  }
}

/** The "cancel the transaction" control of an open transaction (else null). */
export function cancelControl(tx, call, done, report) {
  if (tx.status !== "open") return null;
  return el("div", { class: "actions" }, el("button", {
    type: "button", class: "danger", id: "tx-cancel", text: t("actions.cancel"),
    onclick: (event) => act(event.currentTarget, report, async () => {
      done(await call("POST", path(tx, "/cancel"), { body: {} }));
    }),
  }));
}

/** A signer's "resend" and "replace" controls, while they may still sign (else null). */
export function signerControls(tx, signer, call, done, report) {
  if (tx.status !== "open" || !(PENDING.includes(signer.status) || signer.status === "waiting")) return null;
  const field = `replace-${signer.id}`;
  const resend = PENDING.includes(signer.status) ? el("button", {
    type: "button", "data-resend": signer.id, text: t("actions.resend"),
    onclick: (event) => act(event.currentTarget, report, async () => {
      done(await call("POST", path(tx, `/signers/${encodeURIComponent(signer.id)}/resend`), { body: {} }));
      say(report, t("actions.resent", { email: signer.email }), "ok");
    }),
  }) : null;
  const replace = el("form", { class: "inline", "data-replace": signer.id,
    onsubmit: (event) => {
      event.preventDefault();
      const email = document.getElementById(field).value.trim();
      if (!email) return;
      act(event.submitter || event.currentTarget, report, async () => {
        done(await call("PUT", path(tx, `/signers/${encodeURIComponent(signer.id)}`), { body: { email } }));
      });
    } },
  el("label", { for: field, class: "small", text: t("actions.replaceLabel") }),
  el("input", { id: field, type: "email", maxlength: "254", autocomplete: "off" }),
  el("button", { type: "submit", text: t("actions.replace") }));
  return el("div", { class: "actions" }, resend, replace);
}
