// signer-certificates.js: the certificates on the signer's tokens, as the agent lists them,
// sorted by the portal's check (certificates/check: qualified and the signer's own, or
// not: portal/API.md), and the sign step's chooser. A choice names the holder, the
// issuer's organisation, the validity, "qualified" and where the key is, each word in the
// page's language: the agent's own labels ("Digital Signature", "PIV card ...") are
// English, so the chooser says them from the key's slot and the token's serial number.

import { api, el, explain } from "/static/api.js";
import { formatDate, has, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);

/** Tokens, and the certificates on them sorted by the portal's check: qualified and
 * issued to this signer, or not (someone else's is not usable). */
export async function findCertificates(base, client) {
  const { tokens } = await client.listTokens();
  const byId = new Map(tokens.map((token) => [token.id, token]));
  const qualified = [];
  const others = [];
  const { credentials } = await client.listCredentials();
  for (const credential of credentials) {
    if (!credential.hasCertificate) continue;
    const info = await client.credentialInfo(credential.credentialID);
    const certificates = (info.cert && info.cert.certificates) || [];
    if (certificates.length === 0) continue;
    const entry = { credentialID: credential.credentialID, tokenID: credential.tokenID,
                    keyID: credential.keyID, label: credential.label,
                    token: byId.get(credential.tokenID) || null,
                    certificate: certificates[0], chain: certificates.slice(1),
                    check: null, reasons: [] };
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

/** The person a certificate names (the portal's `holder`, else its common name). */
export function holderName(check) {
  return (check && (check.holder || check.commonName || check.subject)) || "?";
}

export function reasonText(reason, check = null) {
  if (reason === "CERTIFICATE_NOT_SIGNERS") return t("reason.CERTIFICATE_NOT_SIGNERS", { holder: holderName(check) });
  const key = `reason.${reason}`;
  return has(key) ? t(key) : reason;
}

/** "Signature key on the token no. 1234": the PIV slot (SP 800-73-4 key references
 * 9A/9C/9D/9E) in the page's language, the agent's label for any other key. */
export function keyPlace(entry) {
  const slot = `sign.slot${String(entry.keyID || "").toUpperCase()}`;
  const key = has(slot) ? t(slot) : (entry.label || entry.credentialID);
  const token = entry.token;
  const where = token && token.serial ? t("sign.tokenSerial", { serial: token.serial })
    : (token && token.label) || entry.tokenID;
  return t("sign.keyOnToken", { key, token: where });
}

/** One certificate's facts: issuer's organisation and validity, then where its key is. */
export function certificateDetails(entry) {
  const check = entry.check || {};
  return `${t("sign.certificateDetails", {
    issuer: check.issuerOrganisation || check.issuer || "?",
    from: formatDate(check.notBefore, false), until: formatDate(check.notAfter, false),
  })} ${keyPlace(entry)}`;
}

/**
 * The chooser: one radio per qualified certificate (`agent.qualified`), the others listed
 * with why they cannot sign here. `selectedID` stays chosen; `onChange(entry)` on a choice.
 */
export function renderCertificateChoices(agent, selectedID, onChange) {
  const choices = agent.qualified.map((entry, index) => {
    const input = el("input", { type: "radio", name: "credential", value: entry.credentialID,
                                id: `credential-${index}`,
                                "aria-describedby": `credential-${index}-details` });
    input.checked = selectedID ? selectedID === entry.credentialID : agent.qualified.length === 1;
    input.addEventListener("change", () => onChange(entry));
    const blocked = agent.blocked.has(entry.tokenID);
    const badge = el("span", { class: "badge", text: t("sign.qualifiedBadge") });
    badge.dataset.status = "valid";
    return el("label", { class: "choice", for: `credential-${index}` }, input,
      el("span", {},
        el("strong", { text: holderName(entry.check) }), " ", badge,
        el("span", { class: "small muted cert-details", id: `credential-${index}-details`,
                     text: certificateDetails(entry) + (blocked ? ` ${t("agentError.PIN_BLOCKED")}` : "") })));
  });
  $("certificate-choices").replaceChildren(...choices);
  const others = agent.others.map((entry) => el("li", {
    text: `${entry.check ? holderName(entry.check) : entry.label || entry.credentialID}: ${
      entry.reasons.map((r) => reasonText(r, entry.check)).join(", ") || t("sign.notQualified")}`,
  }));
  $("not-qualified-list").replaceChildren(...others);
  $("not-qualified").hidden = others.length === 0;
}
