// validate.js: the validation page (/validate, portal/API.md "Validation"): anyone
// uploads a PDF (sent as it is, application/pdf), reads each signature's result, and
// downloads the report as JSON, as ETSI TS 119 102-2 XML or as a sealed PDF: the last two
// are fetched by the file's SHA-256 (the portal keeps this address's report 5 minutes),
// not by sending the file again; sent again only once the portal no longer has it.

import { ApiError, explain, saveBlob, say } from "/static/api.js";
import { bindSwitcher, chooseLanguage, onLanguageChange, setLanguage, t } from "/static/i18n.js";
import { renderSignatures, summary } from "/static/validation.js";

const $ = (id) => document.getElementById(id);
const ACCEPT = { json: "application/json", xml: "application/xml", pdf: "application/pdf" };
let file = null;
let report = null;

/** The answer as the report ("json") or a blob; ApiError for a refusal. */
async function read(request, kind) {
  let response;
  try {
    response = await request();
  } catch (_) {
    throw new ApiError("NETWORK", 0);
  }
  if (!response.ok) {
    let reply = {};
    try { reply = await response.json(); } catch (_) { reply = {}; }
    throw new ApiError(typeof reply.error === "string" ? reply.error : `HTTP_${response.status}`,
      response.status, reply);
  }
  return kind === "json" ? response.json() : response.blob();
}

/** The report of `chosen` in the form `kind` ("json" answers the parsed report). */
function validate(chosen, kind) {
  return read(() => fetch(`/api/v1/validations?name=${encodeURIComponent(chosen.name)}`, {
    method: "POST", body: chosen, cache: "no-store", credentials: "same-origin",
    headers: { "Content-Type": "application/pdf", Accept: ACCEPT[kind] },
  }), kind);
}

/** The report the portal kept of the file `sha256` for this address, as `kind`. */
function kept(sha256, kind) {
  return read(() => fetch(`/api/v1/validations/${encodeURIComponent(sha256)}`, {
    cache: "no-store", credentials: "same-origin", headers: { Accept: ACCEPT[kind] },
  }), kind);
}

function render() {
  if (!report) return;
  $("result-file").textContent = t("validate.fileFacts", { name: report.file, sha256: report.sha256 });
  $("result-summary").textContent = summary(report);
  $("signatures").replaceChildren(renderSignatures(report));
}

async function submit(event) {
  event.preventDefault();
  const chosen = $("file").files[0];
  if (!chosen) {
    say($("notice"), t("validate.chooseFile"), "error");
    return;
  }
  $("validate-submit").disabled = true;
  $("result").hidden = true;  // never an earlier file's result under a new file's error
  report = null;
  say($("notice"), t("validate.working"), "info");
  try {
    report = await validate(chosen, "json");
    file = chosen;
    say($("notice"), "");
    render();
    $("result").hidden = false;
    $("result-h").focus?.();
  } catch (error) {
    say($("notice"), explain(error), "error");
  } finally {
    $("validate-submit").disabled = false;
  }
}

async function download(button, kind) {
  if (!report || !file) return;
  const stem = (report.file || "document").replace(/\.pdf$/i, "");
  if (kind === "json") {
    saveBlob(new Blob([JSON.stringify(report, null, 2)], { type: ACCEPT.json }), `${stem}-validation.json`);
    return;
  }
  button.disabled = true;
  try {
    let blob;
    try {
      blob = await kept(report.sha256, kind);
    } catch (error) {
      if (error.code !== "NOT_FOUND") throw error;
      blob = await validate(file, kind);  // the portal's copy aged out: send it again
    }
    saveBlob(blob, `${stem}-validation.${kind}`);
  } catch (error) {
    say($("notice"), explain(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function main() {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  onLanguageChange(render);
  $("upload-form").addEventListener("submit", submit);
  for (const kind of ["json", "xml", "pdf"]) {
    $(`download-${kind}`).addEventListener("click", (event) => download(event.currentTarget, kind));
  }
  document.body.dataset.ready = "true";
}

main();
