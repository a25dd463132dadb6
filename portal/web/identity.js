// identity.js: "continue on my smartphone" (/id/<session>, from the QR code on the
// signer's page). The session id in the address is the capability the identity service
// gave; the phone captures the document and does the video check, the computer's page
// polls the same session.

import { IdentityCapture } from "/static/capture.js";
import { bindSwitcher, chooseLanguage, onLanguageChange, setLanguage } from "/static/i18n.js";

const session = decodeURIComponent(location.pathname.replace(/^\/id\//, "").split("/")[0]);
let capture = null;

function draw() {
  if (capture) capture.stop();
  capture = new IdentityCapture(document.getElementById("phone-capture"), {
    session, handoff: false,
    onVerified: () => {
      document.getElementById("phone-done").hidden = false;
      document.body.dataset.verified = "true";
    },
    onLocked: () => { document.getElementById("phone-locked").hidden = false; },
  });
  capture.start().finally(() => { document.body.dataset.ready = "true"; });
}

await setLanguage(chooseLanguage());
bindSwitcher();
onLanguageChange(() => draw());
draw();
