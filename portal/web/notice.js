// notice.js: the requester's pages (/settings, /workspace, /advanced, /templates) say
// what happened in their #notice region: `run` an action, then its success sentence or
// the error explained.

import { explain, say } from "/static/api.js";
import { t } from "/static/i18n.js";

export function notice(text, kind = "info") {
  say(document.getElementById("notice"), text, kind);
}

/** Run `action`; say `success` (an i18n key) after it, or why it failed. */
export async function run(action, success = null) {
  try {
    await action();
    if (success) notice(t(success));
  } catch (error) {
    notice(explain(error), "error");
  }
}
