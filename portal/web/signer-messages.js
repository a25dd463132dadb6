// signer-messages.js: the signer's thread with the requester (portal/API.md
// `/api/s/<invite>/messages`), refreshed every 15 s while the page is visible.

import { api, explain, say } from "/static/api.js";
import { renderThread, typedMessage } from "/static/messages.js";

const $ = (id) => document.getElementById(id);

/** ctx (from signer.js): {base, guarded(button, action, onError)}. */
export function createSignerThread(ctx) {
  let timer = null;

  function start() {
    if (timer !== null) return;
    load();
    timer = setInterval(() => { if (!document.hidden) load(); }, 15000);
  }

  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  async function load() {
    try {
      const { messages } = await api("GET", `${ctx.base}/messages`);
      renderThread(messages, "signer");
      say($("message-error"), "");
    } catch (error) {
      if (["MESSAGING_DISABLED", "ALREADY_SIGNED"].includes(error.code)) stop();
      say($("message-error"), explain(error), "error");
    }
  }

  async function sendMessage(event) {
    event.preventDefault();
    const text = typedMessage("message-text", "message-error");
    if (text === null) return;
    await ctx.guarded($("message-send"), async () => {
      await api("POST", `${ctx.base}/messages`, { body: { text } });
      $("message-text").value = "";
      await load();
    }, (error) => {
      say($("message-error"), explain(error), "error");
      return true;
    });
  }

  function wire() {
    $("message-form").addEventListener("submit", sendMessage);
    $("message-refresh").addEventListener("click", () => load());
  }

  return { start, stop, wire };
}
