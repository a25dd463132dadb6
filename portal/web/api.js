// api.js: the portal's HTTP API (portal/API.md) as seen from the pages, and one place
// that turns any failure (portal, agent, network) into a sentence for the person.

import { has, t } from "/static/i18n.js";

/** A portal error: `code` from API.md's closed list, plus the extra fields it sent. */
export class ApiError extends Error {
  constructor(code, status, body = {}) {
    super(body.message || code);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.body = body;
  }
}

/** Call the portal. `body` is sent as JSON; the reply is parsed as JSON (or kept as a Blob). */
export async function api(method, path, { body = undefined, token = null, blob = false, csrf = null } = {}) {
  const headers = { Accept: blob ? "*/*" : "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf; // a signed-in session's state-changing call
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, cache: "no-store", credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    throw new ApiError("NETWORK", 0);
  }
  if (!response.ok) {
    let reply = {};
    try { reply = await response.json(); } catch (_) { reply = {}; }
    const code = typeof reply.error === "string" ? reply.error : `HTTP_${response.status}`;
    throw new ApiError(code, response.status, reply);
  }
  if (blob) {
    return { blob: await response.blob(), filename: attachmentName(response) };
  }
  if (response.status === 204) return {};
  return response.json();
}

function attachmentName(response) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) {
    try { return decodeURIComponent(star[1]); } catch (_) { /* fall through */ }
  }
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1] : null;
}

/** Hand a downloaded Blob to the browser as a file. */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename || "document.pdf";
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}

// The agent's INVALID_OTP carries data.reason (agent/signing.py otp_error); some reasons
// are the portal's own verdicts, explained with the portal's sentence.
const AGENT_OTP_REASONS = {
  replayed: "error.OTP_REPLAYED", session: "error.SESSION_UNKNOWN",
  hashes: "error.HASHES_MISMATCH", "not-enrolled": "agentError.OTP_NOT_ENROLLED",
  OTP_EXPIRED: "error.OTP_EXPIRED", OTP_REPLAYED: "error.OTP_REPLAYED",
  OTP_LOCKED: "error.OTP_LOCKED", SESSION_UNKNOWN: "error.SESSION_UNKNOWN",
  HASHES_MISMATCH: "error.HASHES_MISMATCH",
};

/** One sentence for any error: a portal ApiError, an agent QsignError, or anything else. */
export function explain(error) {
  if (error && error.name === "QsignError") return explainAgent(error);
  if (error && error.name === "ApiError") {
    const vars = {
      attemptsLeft: error.body.attemptsLeft ?? "?",
      retryAfter: error.body.retryAfter ?? "?",
    };
    if (error.code === "OTP_INVALID" && typeof error.body.attemptsLeft !== "number") {
      return t("error.OTP_INVALID_NOCOUNT");
    }
    if (error.code === "OTP_THROTTLED" && typeof error.body.retryAfter !== "number") {
      return t("error.OTP_THROTTLED_NOWAIT");
    }
    const key = `error.${error.code}`;
    const text = has(key) ? t(key, vars) : t("error.UNKNOWN", { code: error.code });
    // A body refused by its schema names its field (API.md "Requests and connections").
    const field = error.code === "BAD_REQUEST" && typeof error.body.field === "string" ? error.body.field : "";
    return field ? `${field}: ${text}` : text;
  }
  return t("error.UNKNOWN", { code: (error && error.message) || "?" });
}

function explainAgent(error) {
  const data = error.data || {};
  if (error.code === "INVALID_OTP" && Object.hasOwn(AGENT_OTP_REASONS, data.reason)) {
    return t(AGENT_OTP_REASONS[data.reason]);
  }
  if (error.code === "INVALID_OTP" && typeof data.attemptsLeft === "number") {
    return t("error.OTP_INVALID", { attemptsLeft: data.attemptsLeft });
  }
  if (error.code === "INVALID_PIN") {
    if (error.attemptsLeft === null) return t("agentError.INVALID_PIN_NOCOUNT");
    // The last try used up: the card has blocked the PIN.
    if (error.attemptsLeft === 0) return `${t("agentError.INVALID_PIN_NOCOUNT")} ${t("agentError.PIN_BLOCKED")}`;
    if (error.attemptsLeft === 1) return t("agentError.INVALID_PIN_LAST");
    return t("agentError.INVALID_PIN", { attemptsLeft: error.attemptsLeft });
  }
  if (error.code === "OTP_THROTTLED" && typeof data.retryAfter !== "number") {
    return t("agentError.OTP_THROTTLED_NOWAIT");
  }
  const key = `agentError.${error.code}`;
  if (has(key)) return t(key, { retryAfter: data.retryAfter ?? "?" });
  return t("agentError.UNKNOWN", { code: error.code });
}

/** A phone number as typed, without spaces, dots or dashes, when it is E.164 (ITU-T
 * E.164: + and 7 to 15 digits); null when it is not. */
export function e164(typed) {
  const phone = typed.replace(/[\s.-]/g, "");
  return /^\+[1-9][0-9]{6,14}$/.test(phone) ? phone : null;
}

/** Base64 (standard, padded) of a Blob's bytes (a File is a Blob). */
export function blobToBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      resolve(url.slice(url.indexOf(",") + 1));
    };
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** A small element helper: el("p", {class: "x", text: "..."}, child, ...). */
export function el(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") element.textContent = value;
    else if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** Show a message in a status region (role=status/alert set in the HTML). */
export function say(region, text, kind = "info") {
  region.textContent = text;
  region.dataset.kind = kind;
  region.hidden = !text;
}
