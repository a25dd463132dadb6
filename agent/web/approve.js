// The agent's own pairing page (agent/protocol/approve.py). The secret comes in the
// URL's fragment (printed by `qsign agent approve --open`), is kept in this tab's
// sessionStorage and leaves the address bar at once. Every call carries it in a header.
// Origins are shown with textContent only: they are chosen by the sites that ask.

const KEY = "qsign-approval";
if (location.hash.length > 1) {
  sessionStorage.setItem(KEY, location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
}
const secret = sessionStorage.getItem(KEY) || "";
const status = document.getElementById("status");
const list = document.getElementById("pending");

function say(text, error = false) {
  status.textContent = text;
  status.className = error ? "error" : "";
}

async function call(path, body = undefined) {
  const init = { cache: "no-store", headers: { "X-Qsign-Approval": secret } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(reply.message || `HTTP ${response.status}`);
  return reply;
}

function render(pending) {
  list.replaceChildren();
  for (const { code, origin, asks } of pending) {
    const item = document.createElement("li");
    const who = document.createElement("div");
    who.className = "origin";
    who.textContent = origin;
    const shown = document.createElement("div");
    shown.className = "code";
    shown.textContent = `${code.slice(0, 4)}-${code.slice(4)}`;
    item.append(who, shown);
    if (asks) {  // a confirmation, not a pairing: say what approving allows
      const what = document.createElement("div");
      what.className = "asks";
      what.textContent = `asks to ${asks}`;
      item.append(what);
    }
    for (const action of ["approve", "deny"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = action === "approve" ? "Approve" : "Deny";
      button.dataset.action = action;
      button.dataset.code = code;
      button.addEventListener("click", () => decide(code, action));
      item.append(button);
    }
    list.append(item);
  }
  say(pending.length ? `${pending.length} request(s) waiting` : "no request waiting");
}

async function refresh() {
  try {
    render((await call("/v1/approve/pending")).pending);
  } catch (error) {
    say(error.message, true);
  }
}

async function decide(code, action) {
  try {
    const { origin, paired, kind } = await call("/v1/approve/decide", { code, action });
    await refresh();
    const done = kind === "confirmation" ? `confirmed: ${origin}` : `paired: ${origin}`;
    say(action === "approve" ? done : `denied: ${origin}`);
  } catch (error) {
    say(error.message, true);
  }
}

document.getElementById("typed").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("code");
  const code = input.value;
  input.value = "";
  decide(code, "approve");
});

refresh();
setInterval(refresh, 3000);
window.qsignApprovalReady = true;
