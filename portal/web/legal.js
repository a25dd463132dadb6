// legal.js: the portal's own versioned legal texts in a page (the signer's privacy
// notice and terms, the first-time signer's issuance and Personal Space consents).

import { language, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
const LEGAL_DROP = "script,style,iframe,object,embed,form,input,button,link,meta,base";

/** Our own versioned legal text, as inert markup (no scripts, handlers or javascript: links). */
export function cleanFragment(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const node of doc.body.querySelectorAll(LEGAL_DROP)) node.remove();
  for (const node of doc.body.querySelectorAll("*")) {
    for (const attr of [...node.attributes]) {
      const value = attr.value.trim().toLowerCase();
      if (attr.name.startsWith("on") || value.startsWith("javascript:")) node.removeAttribute(attr.name);
    }
  }
  return [...doc.body.childNodes];
}

/** The text's nodes without its title: our texts open with it as an h1/h2 (sections are
 * h3), and the page already names the text, with its version, above the box. */
function withoutTitle(nodes) {
  const first = nodes.find((node) => node.nodeType === Node.ELEMENT_NODE
                                     || (node.textContent || "").trim() !== "");
  return first && /^H[12]$/.test(first.nodeName) ? nodes.filter((node) => node !== first) : nodes;
}

/**
 * Each consent of `kinds` (from the view's `consents`) into its elements: the heading
 * `<kind>-h`, the box `legal-<kind>` with the text in the page's language (fetched once
 * a language), the checkbox `consent-<kind>` (ticked when already accepted) and its
 * label `consent-<kind>-text`.
 */
export async function renderConsents(consents, kinds) {
  for (const kind of kinds) {
    const consent = consents.find((c) => c.kind === kind);
    const box = $(`legal-${kind}`);
    if (!consent) {
      box.textContent = t("consent.missing");
      continue;
    }
    const named = { title: consent.title, version: consent.version };
    $(`${kind}-h`).textContent = t("consent.textHeading", named);
    $(`consent-${kind}-text`).textContent = t(`consent.accept_${kind}`, named);
    const check = $(`consent-${kind}`);
    check.checked = check.checked || consent.accepted;
    const loaded = `${consent.url}|${language()}`;
    if (box.dataset.loaded === loaded) continue;
    const url = new URL(consent.url, location.origin);
    url.searchParams.set("lang", language());
    box.textContent = t("common.loading");
    try {
      const response = await fetch(url, { cache: "no-cache" });
      if (!response.ok) throw new Error(String(response.status));
      box.replaceChildren(...withoutTitle(cleanFragment(await response.text())));
      box.dataset.loaded = loaded;
    } catch (_) {
      box.textContent = t("consent.loadFailed");
    }
  }
}
