// i18n.js: every visible text of the portal's pages comes from /static/i18n/<lang>.json.
//
// HTML marks its texts with data-i18n="key" (textContent) and
// data-i18n-attr="attr:key;attr:key" (attributes such as aria-label or placeholder).
// Scripts call t("key", {name: value}); "{name}" in a text is replaced by the value.
// The language comes from ?lang=, else the page's own choice (the signer's lang), else
// the one the person picked last (localStorage), else the browser's.

export const LANGUAGES = ["en", "fr"];
const STORE_KEY = "qsign.lang";

let current = "en";
let texts = {};
let fallback = {};
const listeners = new Set();

function pick(candidate) {
  if (typeof candidate !== "string") return null;
  const short = candidate.slice(0, 2).toLowerCase();
  return LANGUAGES.includes(short) ? short : null;
}

/** The language asked by the address bar, if any. */
export function urlLanguage() {
  return pick(new URLSearchParams(location.search).get("lang"));
}

/** ?lang= wins, then `preferred` (e.g. the signer's lang), then the last choice, then the browser. */
export function chooseLanguage(preferred = null) {
  let stored = null;
  try { stored = localStorage.getItem(STORE_KEY); } catch (_) { stored = null; }
  return urlLanguage() || pick(preferred) || pick(stored) || pick(navigator.language) || "en";
}

async function load(lang) {
  const response = await fetch(`/static/i18n/${lang}.json`, { cache: "no-cache" });
  if (!response.ok) throw new Error(`i18n ${lang}: HTTP ${response.status}`);
  return response.json();
}

/** Load a language and translate the document. */
export async function setLanguage(lang, { remember = false } = {}) {
  const chosen = pick(lang) || "en";
  if (Object.keys(fallback).length === 0) fallback = await load("en");
  texts = chosen === "en" ? fallback : await load(chosen);
  current = chosen;
  document.documentElement.lang = chosen;
  if (remember) {
    try { localStorage.setItem(STORE_KEY, chosen); } catch (_) { /* private mode */ }
    const url = new URL(location.href);
    url.searchParams.set("lang", chosen);
    history.replaceState(history.state, "", url);
  }
  translate(document);
  for (const listener of listeners) listener(chosen);
  return chosen;
}

export function language() {
  return current;
}

/** Called after each language change (pages re-render their dynamic parts). */
export function onLanguageChange(listener) {
  listeners.add(listener);
}

/** The text for `key` with {placeholders} filled; the key itself if it is missing. */
export function t(key, vars = {}) {
  const text = texts[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole);
}

/** Is there a text for this key? */
export function has(key) {
  return Object.prototype.hasOwnProperty.call(fallback, key);
}

/** Translate the data-i18n and data-i18n-attr marks under `root`. */
export function translate(root) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of element.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      if (attr && key) element.setAttribute(attr, t(key));
    }
  }
  const title = document.querySelector("title[data-i18n]");
  if (title) document.title = title.textContent;
}

/** Wire the header's language <select id="lang-switch">. */
export function bindSwitcher() {
  const select = document.getElementById("lang-switch");
  if (!select) return;
  select.value = current;
  select.addEventListener("change", () => setLanguage(select.value, { remember: true }));
  onLanguageChange((lang) => { select.value = lang; });
}

/** A date and time in the page's language (ISO-8601 in). */
export function formatDate(iso, withTime = true) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const options = withTime ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" };
  return new Intl.DateTimeFormat(current === "fr" ? "fr-FR" : "en-GB", options).format(date);
}

/** A size in bytes, readable. */
export function formatSize(bytes) {
  const units = current === "fr" ? ["o", "Ko", "Mo"] : ["B", "KB", "MB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
