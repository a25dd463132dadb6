// validation.js: a validation report (portal/API.md "Validation") drawn for a person, the
// one way every page shows it (/validate, Personal Space, the requester's transaction):
// per signature the result in words (ETSI EN 319 102-1 indications), whether it is a
// qualified electronic signature (ETSI TS 119 172-4), who signed, when and by which
// clock, what it covers, and why it did not pass or is not qualified.

import { el } from "/static/api.js";
import { formatDate, t } from "/static/i18n.js";

const INDICATIONS = {
  "TOTAL-PASSED": () => t("validation.passed"),
  "TOTAL-FAILED": () => t("validation.failed"),
  INDETERMINATE: () => t("validation.indeterminate"),
};
const STATUS = { "TOTAL-PASSED": "valid", "TOTAL-FAILED": "revoked", INDETERMINATE: "open" };
const QUALIFICATIONS = {
  QES: () => t("validation.qes"),
  "AdES/QC": () => t("validation.adesQc"),
  AdES: () => t("validation.ades"),
  QESeal: () => t("validation.qeseal"),
  "AdESeal/QC": () => t("validation.adesealQc"),
  "not AdES": () => t("validation.notAdes"),
};
const INDETERMINATE_PREFIX = "Indeterminate ";  // TS 119 172-4: not proven either way yet

function qualification(value) {
  if (String(value).startsWith(INDETERMINATE_PREFIX)) {
    return t("validation.notProvenYet", { what: worded(QUALIFICATIONS, value.slice(INDETERMINATE_PREFIX.length)) });
  }
  return worded(QUALIFICATIONS, value);
}
const TIME_SOURCES = {
  timestamp: () => t("validation.timeFromTimestamp"),
  claimed: () => t("validation.timeClaimed"),
};
const COVERAGE = {
  ENTIRE_FILE: () => t("validation.coversFile"),
  ENTIRE_REVISION: () => t("validation.coversRevision"),
  PARTIAL: () => t("validation.coversPart"),
};

function worded(table, value) {
  return Object.hasOwn(table, value) ? table[value]() : String(value ?? "");
}

/** One sentence for the whole file. */
export function summary(report) {
  const signatures = report.signatures || [];
  if (signatures.length === 0) return t("validation.noSignature");
  const passed = signatures.filter((s) => s.indication === "TOTAL-PASSED").length;
  if (passed === signatures.length) return t("validation.allValid", { n: signatures.length });
  return t("validation.someInvalid", { n: signatures.length, passed });
}

/** The signatures of `report` as a list element (data-indication, data-qualification on
 * each item, for scripts and tests). */
export function renderSignatures(report) {
  return el("ol", { class: "plain signatures" }, ...(report.signatures || []).map((s) => {
    const facts = el("dl", { class: "facts small" });
    const fact = (label, value) => facts.append(el("dt", { text: label }), el("dd", { text: value }));
    if (s.indication !== "TOTAL-PASSED" && s.subIndication) fact(t("validation.reason"), s.subIndication);
    fact(t("validation.signer"), s.signer || t("validation.unknownSigner"));
    fact(t("validation.time"), s.signingTime
      ? `${formatDate(s.signingTime)} (${worded(TIME_SOURCES, s.timeSource)})`
      : t("validation.noTime"));
    fact(t("validation.covers"), s.coverageDetail
      ? `${worded(COVERAGE, s.coverage)} (${s.coverageDetail})` : worded(COVERAGE, s.coverage));
    fact(t("validation.level"), `PAdES ${s.level}`);
    if (s.qualification !== "QES" && s.qualification !== "QESeal") {
      fact(t("validation.qualification"), qualification(s.qualification));
      if (s.qualificationReason) fact(t("validation.notQualifiedBecause"), s.qualificationReason);
    }
    return el("li", { class: "signature", "data-indication": s.indication, "data-qualification": s.qualification },
      el("div", { class: "row" },
        el("strong", { class: "indication", text: worded(INDICATIONS, s.indication) }),
        el("span", { class: "badge", "data-status": STATUS[s.indication] || "open", text: s.field })),
      s.qualification === "QES" ? el("p", { class: "qualified", text: t("validation.isQes") }) : null,
      s.qualification === "QESeal" ? el("p", { class: "qualified", text: t("validation.isQeseal") }) : null,
      facts);
  }));
}

/** Draw in `region` the report `load()` answers (a line while it works); a failure hides
 * the region and is thrown on, for the page to explain. */
export async function showReport(region, load) {
  region.hidden = false;
  region.replaceChildren(el("p", { class: "small muted", text: t("validation.working") }));
  try {
    const report = await load();
    region.replaceChildren(el("p", { text: summary(report) }), renderSignatures(report));
  } catch (error) {
    region.hidden = true;
    throw error;
  }
}
