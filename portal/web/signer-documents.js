// signer-documents.js: the documents on the signer's page: read page by page (images the
// portal renders), downloaded before acceptance, any active content warned of; and the
// "done" step: where the transaction stands and the signed documents to download
// (`signed.zip`, portal/API.md "Signer API").

import { api, el, saveBlob } from "/static/api.js";
import { formatDate, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);

// What the portal found that could act by itself in a PDF reader (API.md activeContent).
const ACTIVE_CONTENT = {
  javascript: "documents.activeJavascript", "open-action": "documents.activeOpenAction",
  launch: "documents.activeLaunch", "additional-actions": "documents.activeAdditionalActions",
  "embedded-files": "documents.activeEmbeddedFiles", xfa: "documents.activeXfa",
  unchecked: "documents.activeUnchecked",
};

/** The warning shown above the documents, before acceptance, when any holds active content. */
function renderActiveContent(documents) {
  let box = $("active-content");
  if (!box) {
    box = el("div", { id: "active-content", class: "notice", role: "note" });
    box.dataset.kind = "warn";
    $("doc-tabs").before(box);
  }
  const flagged = documents.filter((doc) => (doc.activeContent || []).length > 0);
  box.hidden = flagged.length === 0;
  box.replaceChildren(
    el("p", { text: t("documents.activeContent") }),
    el("ul", {}, ...flagged.map((doc) => el("li", { text: t("documents.activeIn", {
      name: doc.name,
      what: doc.activeContent.map((kind) => (ACTIVE_CONTENT[kind] ? t(ACTIVE_CONTENT[kind]) : kind)).join(", "),
    }) }))),
  );
}

/**
 * ctx (from signer.js): {base, view(), notice(text, kind), guarded(button, action)}.
 */
export function createDocuments(ctx) {
  let currentDoc = 0;

  function render() {
    const documents = ctx.view().documents;
    if (currentDoc >= documents.length) currentDoc = 0;
    renderActiveContent(documents);
    const tabs = documents.map((doc, index) => el("button", {
      type: "button", "aria-pressed": String(index === currentDoc), text: doc.name,
      onclick: () => { currentDoc = index; render(); },
    }));
    $("doc-tabs").replaceChildren(...tabs);
    const doc = documents[currentDoc];
    if (!doc) {
      $("pages").replaceChildren(el("p", { text: t("documents.none") }));
      return;
    }
    const images = [];
    for (let n = 1; n <= doc.pages; n++) {
      images.push(el("img", {
        src: `${ctx.base}/documents/${encodeURIComponent(doc.id)}/pages/${n}.png?width=800`,
        alt: t("documents.pageAlt", { n, total: doc.pages, name: doc.name }),
        loading: n <= 2 ? "eager" : "lazy", width: "800", height: "1131",
        onerror: () => ctx.notice(t("documents.pageFailed", { n, name: doc.name }), "error"),
      }));
    }
    $("pages").replaceChildren(...images);
    $("pages").setAttribute("aria-label", t("documents.pagesOf", { name: doc.name }));
    $("download-one").textContent = t("documents.downloadNamed", { name: doc.name });
  }

  /** The done step: when this signer signed, who else has, what to download. */
  function renderDone() {
    const { transaction, signer, documents } = ctx.view();
    const complete = transaction.status === "completed";
    $("done-signed-at").textContent = signer.signedAt
      ? t("done.signedAt", { when: formatDate(signer.signedAt) }) : "";
    $("done-state").textContent = complete ? t("done.complete")
      : t("done.others", { signed: transaction.signed, total: transaction.signers });
    $("done-state").dataset.kind = complete ? "ok" : "info";
    $("done-text").textContent = t(complete ? "done.textComplete" : "done.text");
    $("done-documents").replaceChildren(...documents.map((doc) => el("li", { text: doc.name })));
    $("download-signed").textContent = t(complete ? "done.downloadFinal" : "done.downloadSigned");
  }

  async function download(button, path) {
    await ctx.guarded(button, async () => {
      const { blob, filename } = await api("GET", path, { blob: true });
      saveBlob(blob, filename);
    });
  }

  function wire() {
    $("download-one").addEventListener("click", () => {
      const doc = ctx.view().documents[currentDoc];
      if (doc) download($("download-one"), `${ctx.base}/documents/${encodeURIComponent(doc.id)}/download`);
    });
    $("download-all").addEventListener("click", () => download($("download-all"), `${ctx.base}/documents.zip`));
    $("download-signed").addEventListener("click", () => download($("download-signed"), `${ctx.base}/signed.zip`));
  }

  return { render, renderDone, wire };
}
