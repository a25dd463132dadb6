// messages.js: a transaction's messaging thread (portal/API.md "Messages") as the
// requester's and the signer's pages show it: the viewer's own messages on their side.

import { el, say } from "/static/api.js";
import { formatDate, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);

/** `messages` into #thread; `me` is the viewer's author kind ("requester" or "signer"). */
export function renderThread(messages, me) {
  $("thread").replaceChildren(...messages.map((m) => el("div",
    { class: "message", "data-author": m.author, "data-mine": String(m.author === me) },
    el("div", { class: "meta", text: `${m.author === me ? t("messages.you") : m.name} · ${formatDate(m.at)}` }),
    el("div", { text: m.text }))));
  $("thread-empty").hidden = messages.length > 0;
  $("thread").scrollTop = $("thread").scrollHeight;
}

/** The message typed in `input`, or null once `region` has said there is none. */
export function typedMessage(input, region) {
  const text = $(input).value.trim();
  if (!text) say($(region), t("messages.emptyText"), "error");
  return text || null;
}
