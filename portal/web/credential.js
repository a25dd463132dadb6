// credential.js: whom a requester-side page acts as. A signed-in browser session (its
// cookie, and its CSRF token for state-changing calls: GET /api/auth/session), or else
// a bearer token typed in this tab: the bootstrap administrator's (qsign portal token)
// or a user's API token. Shared with /requester and /outbox through sessionStorage.

import { api } from "/static/api.js";

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
