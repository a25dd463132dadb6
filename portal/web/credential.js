// credential.js: whom a requester-side page acts as. A signed-in browser session (its
// cookie, and its CSRF token for state-changing calls: GET /api/auth/session), or else
// a bearer token typed in this tab: the bootstrap administrator's (qsign portal token)
// or a user's API token. Shared with /requester and /outbox through sessionStorage.

import { api, explain } from "/static/api.js";
import { bindSwitcher, chooseLanguage, onLanguageChange, setLanguage, t } from "/static/i18n.js";

const TOKEN_KEY = "qsign.requesterToken";

/** The signed-in session's view ({user, csrf, workspaces}), or null. */
export async function signedIn() {
  try {
    const view = await api("GET", "/api/auth/session");
    return view.stage === "done" ? view : null;
  } catch (_) {
    return null;
  }
}

/** A page's start: its language (chosen, then switchable in the header); `relabel`
 * redraws what the page's script wrote, after each later change of language. */
export async function pageLanguage(relabel = null) {
  await setLanguage(chooseLanguage());
  bindSwitcher();
  if (relabel) onLanguageChange(relabel);
}

/** A page for signed-in requesters only (/settings, /workspace): its language, then the
 * session. Signed in: {view, call}, `call` sending the session's CSRF token; signed out:
 * the page's #signed-out is shown, the page is ready (data-ready), and null returned. */
export async function signedInPage({ relabel = null } = {}) {
  await pageLanguage(relabel);
  const view = await api("GET", "/api/auth/session");
  if (view.stage !== "done") {
    document.getElementById("signed-out").hidden = false;
    document.body.dataset.ready = "true";
    return null;
  }
  return { view, call: caller({ csrf: view.csrf }) };
}

/** The workspace a page on one workspace (?ws=<id>) acts on: the one asked, else the
 * session's first, else "default" (the bootstrap token's). */
export function workspaceOf(session) {
  const asked = askedWorkspace();
  if (asked) return asked;
  const first = session && session.workspaces && session.workspaces[0];
  return first ? first.id : "default";
}

function askedWorkspace() {
  return new URLSearchParams(location.search).get("ws");
}

/** The workspace a typed token acts on when none is asked: a user's API token works in
 * its own one only, so ask the API which (GET /api/v1/workspaces); the bootstrap token
 * sees them all and keeps "default". */
async function tokenWorkspace(call) {
  const asked = askedWorkspace();
  if (asked) return asked;
  const { workspaces } = await call("GET", "/api/v1/workspaces");
  const mine = workspaces.find((w) => w.id === "default") || workspaces[0];
  return mine ? mine.id : "default";
}

/** The token kept in this tab, or null. */
export function keptToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
}

export function keepToken(token) {
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* private mode */ }
}

export function forgetToken() {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* private mode */ }
}

/** A caller for `credential` ({token} or {csrf}): call(method, path, body). */
export function caller(credential) {
  return (method, path, body = undefined) => api(method, path, {
    body, token: credential.token || null, csrf: credential.csrf || null,
  });
}

/** A page's way in: the signed-in session (if `accept(session)`), else the token kept in
 * this tab, else the page's token form (#token-card, #token-form, #token).
 * `open(call, credential)` loads the page with that caller ({token} or {csrf}); an
 * error it throws is told through `notice`. */
export async function enter(open, { notice, accept = () => true }) {
  const card = document.getElementById("token-card");
  async function attempt(credential) {
    try {
      await open(caller(credential), credential);
      if (credential.token) keepToken(credential.token);
      card.hidden = true;
      notice("");
    } catch (error) {
      if (credential.token && ["UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND"].includes(error.code)) forgetToken();
      card.hidden = false;
      notice(explain(error), "error");
    }
  }
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    const token = input.value.trim();
    input.value = "";
    if (token) attempt({ token });
    else notice(t("token.missing"), "error");
  });
  const session = await signedIn();
  const token = keptToken();
  if (session && accept(session)) await attempt({ csrf: session.csrf });
  else if (token) await attempt({ token });
  else card.hidden = false;
}

/** `enter` for a page on one workspace (/advanced, /templates): `open(call, workspace)`
 * loads it for workspaceOf(the session) when the session is the way in, else for the
 * typed token's own workspace; `accept(session, workspace)` may refuse the session. */
export async function enterWorkspace(open, { notice, accept = () => true }) {
  let workspace = null; // the session's, when the session is the way in
  // A token typed after the session failed to open the page acts on its own workspace,
  // not the session's.
  await enter(async (call, credential) => open(
    call, credential.csrf && workspace ? workspace : await tokenWorkspace(call)), {
    notice, accept: (session) => {
      const chosen = workspaceOf(session);
      const taken = accept(session, chosen);
      workspace = taken ? chosen : null;
      return taken;
    } });
}
