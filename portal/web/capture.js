// capture.js: identity verification with the portal's identity service
// (/api/identity/sessions/<sid>, portal/identity/http.py): each side of the document by
// file upload or the browser camera, "continue on my smartphone" (QR code), then the
// video check (server-issued challenges answered with camera frames before their
// deadline). Used by the signer's page (enrolment.js) and by the phone page (identity.js).
//
// The service reads the identity from the document itself; this module only carries
// pictures and shows each answer.

import { ApiError, blobToBase64, el, explain, say } from "/static/api.js";
import { t } from "/static/i18n.js";

const SIDE_KEYS = { front: "capture.sideFront", back: "capture.sideBack", "data-page": "capture.sideDataPage" };
// The service sees a move from the first frames to the later ones (a blink lasts
// 100-400 ms): a frame every 150 ms, the first two always kept, 24 (or the challenge's
// frames.min when more, at most its frames.max) sent evenly spread.
const FRAME_EVERY_MS = 150;
const FRAMES_KEPT = 48;
const FRAMES_SENT = 24;
const FRAME_WIDTH = 640;
const MIN_ACT_MS = 1500;  // the service refuses answers quicker than a person can act
const POLL_MS = 2500;

/** The fewest distinct frames the service takes in an answer (the challenge says). */
function framesMin(challenge) {
  return Math.max(2, Number(challenge.frames?.min ?? 4));
}

/** One call to the identity service; JSON answer or an ApiError with its code. */
async function identityCall(method, path, { json = undefined, body = undefined, type = undefined } = {}) {
  const headers = { Accept: "application/json" };
  let payload;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (body !== undefined) {
    headers["Content-Type"] = type;
    payload = body;
  }
  let response;
  try {
    response = await fetch(`/api/identity/sessions/${path}`, {
      method, headers, body: payload, cache: "no-store", credentials: "same-origin",
    });
  } catch (_) {
    throw new ApiError("NETWORK", 0);
  }
  let reply = {};
  try { reply = await response.json(); } catch (_) { reply = {}; }
  if (!response.ok) {
    throw new ApiError(typeof reply.error === "string" ? reply.error : `HTTP_${response.status}`,
                       response.status, reply);
  }
  return reply;
}

/** The identity service's refusals, in the person's words (with the data they carry). */
export function explainIdentity(error) {
  if (!error || error.name !== "ApiError") return explain(error);
  const body = error.body || {};
  let text;
  if (error.code === "DOCUMENT_EXPIRED" && body.expiryDate) {
    text = t("capture.expiredOn", { date: body.expiryDate });
  } else if (error.code === "SIDES_MISMATCH" && ["document_number", "surname", "birth_date", "specimen"].includes(body.field)) {
    text = t("error.SIDES_MISMATCH") + " " + t(`capture.mismatchField.${body.field}`);
  } else {
    text = explain(error);
  }
  if (body.locked) text += " " + t("capture.lockedHint");
  return text;
}

/**
 * The capture UI for one identity session, drawn in `root`.
 * options: {session, handoff: bool, onVerified(view), onLocked()}
 */
export class IdentityCapture {
  constructor(root, { session, handoff = true, onVerified = () => {}, onLocked = () => {} }) {
    this.root = root;
    this.sid = session;
    this.handoff = handoff;
    this.onVerified = onVerified;
    this.onLocked = onLocked;
    this.view = null;
    this.results = {};      // side -> {kind, text}
    this.stream = null;     // the open camera
    this.cameraFor = null;  // side being photographed, or "liveness"
    this.poll = null;
    this.challenge = null;
    this.frames = [];       // [{blob, hash}] of the open challenge, newest last
    this.sentHashes = new Set();  // the service refuses a picture sent twice in a session
    this.frameTimer = null;
    this.tick = null;
    this.busy = false;
    this.done = false;
    this.build();
  }

  // ------------------------------------------------------------------ layout

  build() {
    const r = this.root;
    r.replaceChildren();
    this.status = el("p", { class: "muted", id: "capture-status", role: "status", "aria-live": "polite" });
    this.error = el("div", { class: "notice", id: "capture-error", role: "alert", "data-kind": "error", hidden: true });
    this.sides = el("div", { class: "sides", id: "capture-sides" });
    // Camera: one panel, for a side or for the video check.
    this.video = el("video", { id: "camera-video", playsinline: true, muted: true, autoplay: true,
                               "aria-label": t("capture.previewLabel") });
    this.video.muted = true;
    this.shootButton = el("button", { type: "button", class: "primary", id: "camera-shoot", text: t("capture.shoot") });
    this.cancelButton = el("button", { type: "button", id: "camera-cancel", text: t("common.cancel") });
    this.shootButton.addEventListener("click", () => this.shootSide());
    this.cancelButton.addEventListener("click", () => this.closeCamera());
    this.cameraActions = el("div", { class: "actions" }, this.shootButton, this.cancelButton);
    this.cameraPanel = el("div", { class: "camera", id: "camera-panel", hidden: true },
      el("p", { class: "muted", id: "camera-title" }), this.video, this.cameraActions);
    this.fallback = el("div", { class: "notice", id: "camera-fallback", "data-kind": "warn", role: "status", hidden: true });
    // Continue on a smartphone.
    this.handoffPanel = el("div", { class: "handoff", id: "handoff", hidden: true });
    const handoffButton = el("button", { type: "button", id: "handoff-open", text: t("capture.handoff") });
    handoffButton.addEventListener("click", () => this.openHandoff(handoffButton));
    // Offered once the session is known to be at its document step (setView).
    this.handoffActions = el("div", { class: "actions", hidden: true }, handoffButton);
    // The video check.
    this.liveness = el("div", { class: "liveness", id: "liveness", hidden: true });
    r.append(this.status, this.error, this.sides, this.fallback, this.cameraPanel,
             this.handoffActions, this.handoffPanel, this.liveness);
  }

  async start() {
    await this.refresh();
    // The phone follows what the computer does too (a side photographed there).
    if (!this.handoff && !this.done) this.startPolling();
  }

  stop() {
    this.closeCamera();
    this.stopChallenge();
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
  }

  async refresh() {
    try {
      this.setView(await identityCall("GET", encodeURIComponent(this.sid)));
    } catch (error) {
      this.fail(error);
    }
  }

  setView(view) {
    this.view = view;
    this.root.dataset.identityStep = view.step;
    for (const side of view.sides) this.results[side] = { kind: "ok", text: t("capture.sideOk") };
    this.renderSides();
    const done = view.sides.length;
    this.status.textContent = view.step === "document"
      ? t("capture.statusDocument", { done, total: view.required.length })
      : view.step === "liveness" ? t("capture.statusLiveness") : t("capture.statusVerified");
    if (view.step === "liveness") this.renderLiveness();
    else this.liveness.hidden = true;
    this.handoffActions.hidden = !this.handoff || view.step !== "document";
    if (view.step === "verified" && !this.done) {
      this.done = true;
      this.stop();
      this.onVerified(view);
    }
  }

  fail(error, region = this.error) {
    say(region, explainIdentity(error), "error");
    const ended = error && (error.code === "IDENTITY_LOCKED" || (error.body && error.body.locked)
      || ["IDENTITY_SESSION_UNKNOWN", "IDENTITY_SESSION_EXPIRED"].includes(error.code));
    if (ended) {
      this.stop();
      this.closeSession();
      this.onLocked();
    }
  }

  /** The session cannot go on (locked, expired): nothing left to capture, and no way to
   *  continue it on a smartphone; the page offers to start again (onLocked). */
  closeSession() {
    this.root.dataset.identityStep = "locked";
    this.status.textContent = "";  // "now the video check" no longer holds
    this.handoffActions.hidden = true;
    this.handoffPanel.hidden = true;
    this.handoffPanel.replaceChildren();
    this.liveness.hidden = true;
    for (const control of this.root.querySelectorAll(".side input, .side button, .side label")) {
      control.hidden = true;
    }
  }

  renderSides() {
    const view = this.view;
    const blocks = view.required.map((side) => {
      const name = t(SIDE_KEYS[side]);
      const result = this.results[side] || { kind: "todo", text: t("capture.sideTodo") };
      const verified = view.sides.includes(side);
      const file = el("input", { type: "file", id: `file-${side}`, accept: "image/png,image/jpeg",
                                 "aria-describedby": `result-${side}` });
      file.addEventListener("change", () => {
        const chosen = file.files && file.files[0];
        file.value = "";
        if (chosen) this.sendSide(side, chosen, chosen.type);
      });
      const camera = el("button", { type: "button", id: `camera-${side}`,
                                    text: t("capture.useCamera", { side: name }) });
      camera.addEventListener("click", () => this.openCamera(side));
      const controls = verified || view.step !== "document" ? null : el("div", {},
        el("label", { for: `file-${side}`, text: t("capture.upload", { side: name }) }), file,
        el("div", { class: "actions" }, camera));
      return el("fieldset", { class: "side", "data-side": side, "data-state": verified ? "ok" : result.kind },
        el("legend", { text: name }),
        el("p", { class: "side-result", id: `result-${side}`, "data-kind": verified ? "ok" : result.kind,
                  role: "status", text: verified ? t("capture.sideOk") : result.text }),
        controls);
    });
    this.sides.replaceChildren(...blocks);
  }

  // ------------------------------------------------------------------ sides

  async sendSide(side, blob, type) {
    if (this.busy) return;
    if (!["image/png", "image/jpeg"].includes(type)) {
      this.results[side] = { kind: "error", text: t("capture.wrongType") };
      this.renderSides();
      return;
    }
    this.busy = true;
    this.root.dataset.busy = "true";
    say(this.error, "");
    this.results[side] = { kind: "busy", text: t("capture.reading") };
    this.renderSides();
    try {
      const view = await identityCall("PUT", `${encodeURIComponent(this.sid)}/sides/${side}`,
                                      { body: blob, type });
      this.results[side] = { kind: "ok", text: t("capture.sideOk") };
      if (view.sides.length === 0 && view.step === "document") delete this.results[side];
      this.setView(view);
    } catch (error) {
      if (error.code === "SIDES_MISMATCH") {
        // Neither side is trusted any more: both are captured again.
        for (const other of this.view.required) delete this.results[other];
        this.view = { ...this.view, sides: [] };
        this.results[side] = { kind: "error", text: explainIdentity(error) };
      } else {
        this.results[side] = { kind: "error", text: explainIdentity(error) };
      }
      this.renderSides();
      this.fail(error);
    } finally {
      this.busy = false;
      delete this.root.dataset.busy;
    }
  }

  // ------------------------------------------------------------------ camera

  async openCamera(side) {
    this.closeCamera();
    const facing = side === "liveness" ? "user" : "environment";
    if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== "function") {
      this.cameraFallback(side, "unsupported");
      return false;
    }
    try {
      // Width only: the camera keeps its own aspect ratio (nothing of the document is
      // cropped); a document needs a sharp, large picture for its MRZ to be read.
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: { ideal: facing }, width: { ideal: side === "liveness" ? 640 : 1920 } },
      });
    } catch (error) {
      this.cameraFallback(side, error && error.name === "NotAllowedError" ? "denied" : "unavailable");
      return false;
    }
    this.fallback.hidden = true;
    this.cameraFor = side;
    this.video.srcObject = this.stream;
    try { await this.video.play(); } catch (_) { /* autoplay starts it */ }
    await new Promise((resolve) => {
      if (this.video.videoWidth > 0) resolve();
      else this.video.addEventListener("loadeddata", () => resolve(), { once: true });
    });
    this.cameraPanel.querySelector("#camera-title").textContent = side === "liveness"
      ? t("capture.cameraSelfie") : t("capture.cameraSide", { side: t(SIDE_KEYS[side]) });
    this.cameraActions.hidden = side === "liveness";
    this.cameraPanel.hidden = false;
    this.root.dataset.camera = side;
    if (side !== "liveness") this.shootButton.focus();
    return true;
  }

  cameraFallback(side, why) {
    const text = side === "liveness" ? t(`capture.noCamera.${why}`) + " " + t("capture.noCameraLiveness")
      : t(`capture.noCamera.${why}`) + " " + t("capture.noCameraUpload");
    say(this.fallback, text, "warn");
    this.root.dataset.camera = "fallback";
    if (side !== "liveness") {
      const input = document.getElementById(`file-${side}`);
      if (input) input.focus();
    }
  }

  closeCamera() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.cameraFor = null;
    this.video.srcObject = null;
    this.cameraPanel.hidden = true;
    delete this.root.dataset.camera;
  }

  /** The current camera picture; `width` scales it down (frames), else full size. */
  grab(width = 0, type = "image/png", quality = 0.92) {
    const v = this.video;
    const w = width || v.videoWidth;
    const h = Math.round((v.videoHeight * w) / v.videoWidth);
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    canvas.getContext("2d").drawImage(v, 0, 0, w, h);
    return new Promise((resolve) => canvas.toBlob((blob) => resolve(blob), type, quality));
  }

  async shootSide() {
    const side = this.cameraFor;
    if (!side || side === "liveness" || this.video.videoWidth === 0) return;
    const blob = await this.grab(0, "image/png");
    this.closeCamera();
    if (blob) await this.sendSide(side, blob, "image/png");
  }

  // ------------------------------------------------------------------ smartphone

  async openHandoff(button) {
    button.disabled = true;
    try {
      const { url, qrPng } = await identityCall("GET", `${encodeURIComponent(this.sid)}/handoff`);
      const link = el("a", { href: url, class: "mono", id: "handoff-url", text: url, rel: "noreferrer" });
      this.handoffPanel.replaceChildren(
        el("p", { text: t("capture.handoffIntro") }),
        el("img", { src: `data:image/png;base64,${qrPng}`, id: "handoff-qr", width: "240", height: "240",
                    alt: t("capture.handoffAlt") }),
        el("p", { class: "small" }, link),
        el("p", { class: "muted", role: "status", text: t("capture.handoffWaiting") }));
      this.handoffPanel.hidden = false;
      this.startPolling();
    } catch (error) {
      this.fail(error);
    } finally {
      button.disabled = false;
    }
  }

  startPolling() {
    if (this.poll) return;
    this.poll = setInterval(async () => {
      if (document.hidden || this.busy || this.challenge) return;
      try {
        const view = await identityCall("GET", encodeURIComponent(this.sid));
        if (JSON.stringify(view.sides) !== JSON.stringify(this.view.sides) || view.step !== this.view.step) {
          this.setView(view);
        }
      } catch (error) {
        this.fail(error);
      }
    }, POLL_MS);
  }

  // ------------------------------------------------------------------ video check

  renderLiveness() {
    if (!this.liveness.hidden && this.liveness.childElementCount > 0) return;
    const start = el("button", { type: "button", class: "primary", id: "liveness-start", text: t("capture.livenessStart") });
    start.addEventListener("click", () => this.startLiveness(start));
    this.challengeText = el("p", { class: "challenge", id: "challenge-text", role: "status", "aria-live": "assertive" });
    this.challengeTime = el("p", { class: "muted", id: "challenge-time" });
    this.doneButton = el("button", { type: "button", class: "primary", id: "challenge-done", text: t("capture.challengeDone"), hidden: true });
    this.doneButton.addEventListener("click", () => this.answer());
    this.livenessError = el("div", { class: "notice", id: "liveness-error", role: "alert", "data-kind": "error", hidden: true });
    this.liveness.replaceChildren(
      el("h4", { text: t("capture.livenessHeading") }),
      el("p", { text: t("capture.livenessIntro") }),
      this.livenessError, this.challengeText, this.challengeTime,
      el("div", { class: "actions" }, start, this.doneButton));
    this.startButton = start;
    this.liveness.hidden = false;
  }

  async startLiveness(button) {
    say(this.livenessError, "");
    button.disabled = true;
    if (!this.stream || this.cameraFor !== "liveness") {
      const opened = await this.openCamera("liveness");
      if (!opened) {
        button.disabled = false;
        return;
      }
    }
    button.hidden = true;
    button.disabled = false;
    await this.nextChallenge();
  }

  async nextChallenge() {
    try {
      this.challenge = await identityCall("POST", `${encodeURIComponent(this.sid)}/challenges/next`, { json: {} });
    } catch (error) {
      this.challenge = null;
      this.livenessFailed(error);
      return;
    }
    const c = this.challenge;
    c.shownAt = performance.now();
    c.localDeadline = c.shownAt + Number(c.seconds || 20) * 1000;
    this.challengeText.textContent = t("capture.challengeOf", { index: c.index, of: c.of }) + " "
      + t(`challenge.${c.action}`, { count: c.count ?? "" });
    this.liveness.dataset.challenge = c.action;
    this.liveness.dataset.challengeIndex = String(c.index);
    this.frames = [];
    this.frameTimer = setInterval(() => this.keepFrame(), FRAME_EVERY_MS);
    this.doneButton.hidden = false;
    this.doneButton.disabled = true;
    this.updateClock();
    this.tick = setInterval(() => this.updateClock(), 250);
  }

  async keepFrame() {
    const v = this.video;
    // One picture at a time: on a slow device the encoder outlasts the timer's period,
    // and a second call seeing the same camera picture would keep it twice (the service
    // refuses copies: FRAMES_INVALID).
    if (this.keeping || !this.stream || v.videoWidth === 0) return;
    this.keeping = true;
    try {
      await this.keepPicture(v);
    } finally {
      this.keeping = false;
    }
  }

  async keepPicture(v) {
    const canvas = document.createElement("canvas");
    canvas.width = FRAME_WIDTH;
    canvas.height = Math.max(FRAME_WIDTH * 3 / 4, Math.round((v.videoHeight * FRAME_WIDTH) / v.videoWidth));
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(v, 0, 0, canvas.width, canvas.height);
    // A still camera repeats pictures: keep only new ones, new as drawn and as encoded
    // (two pictures that differ by a little noise may encode alike; the service
    // compares the decoded pictures).
    const seen = (h) => this.sentHashes.has(h) || this.frames.some((f) => f.hashes.includes(h));
    const drawn = `p${pixelHash(context.getImageData(0, 0, canvas.width, canvas.height).data)}`;
    if (seen(drawn)) return;
    const challenge = this.challenge;
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    if (!blob || !challenge || this.challenge !== challenge) return;  // answered meanwhile
    const encoded = `j${pixelHash(new Uint8Array(await blob.arrayBuffer()), 1)}`;
    if (seen(encoded) || this.challenge !== challenge) return;
    this.frames.push({ blob, hashes: [drawn, encoded] });
    if (this.frames.length > FRAMES_KEPT) this.frames.splice(2, 1);  // keep the start
  }

  updateClock() {
    const c = this.challenge;
    if (!c) return;
    const now = performance.now();
    const left = Math.max(0, Math.ceil((c.localDeadline - now) / 1000));
    this.challengeTime.textContent = t("capture.timeLeft", { seconds: left, deadline: new Date(c.deadline).toLocaleTimeString() });
    const ready = now - c.shownAt >= MIN_ACT_MS && this.frames.length >= framesMin(c);
    this.doneButton.disabled = !ready;
    if (ready) this.liveness.dataset.ready = "true";
    else delete this.liveness.dataset.ready;
    // Out of time: send what we have; the service judges (and says it was late).
    if (now >= c.localDeadline && this.frames.length >= framesMin(c)) this.answer();
    else if (now >= c.localDeadline) this.cameraFrozen();
  }

  stopChallenge() {
    if (this.frameTimer) clearInterval(this.frameTimer);
    if (this.tick) clearInterval(this.tick);
    this.frameTimer = null;
    this.tick = null;
    if (this.liveness) {
      delete this.liveness.dataset.challenge;
      delete this.liveness.dataset.ready;
    }
  }

  async answer() {
    const c = this.challenge;
    if (!c || this.busy) return;
    this.busy = true;
    this.stopChallenge();
    this.doneButton.disabled = true;
    this.challengeTime.textContent = t("capture.sending");
    try {
      const count = Math.min(Math.max(FRAMES_SENT, framesMin(c)), Number(c.frames?.max ?? FRAMES_SENT));
      const chosen = spread(this.frames, count);
      for (const frame of chosen) for (const hash of frame.hashes) this.sentHashes.add(hash);
      const frames = await Promise.all(chosen.map((frame) => blobToBase64(frame.blob)));
      this.frames = [];
      const view = await identityCall("POST", `${encodeURIComponent(this.sid)}/challenges/${encodeURIComponent(c.id)}`,
                                      { json: { nonce: c.nonce, frames } });
      this.challenge = null;
      this.busy = false;
      this.setView(view);
      if (view.step === "liveness") await this.nextChallenge();
    } catch (error) {
      this.challenge = null;
      this.busy = false;
      this.livenessFailed(error);
    }
  }

  /** The deadline passed without enough different pictures: the camera shows a still image. */
  cameraFrozen() {
    this.challenge = null;
    this.stopChallenge();
    this.doneButton.hidden = true;
    this.challengeText.textContent = "";
    this.challengeTime.textContent = "";
    say(this.livenessError, `${t("capture.cameraFrozen")} ${t("capture.livenessAgain")}`, "error");
    this.liveness.dataset.failed = "CAMERA_FROZEN";
    this.startButton.hidden = false;
    this.startButton.textContent = t("capture.livenessRetry");
  }

  livenessFailed(error) {
    this.stopChallenge();
    this.doneButton.hidden = true;
    this.challengeText.textContent = "";
    this.challengeTime.textContent = "";
    // The last attempt failed (locked): not "again" but start again (restart).
    const ended = error.code === "IDENTITY_LOCKED" || (error.body && error.body.locked);
    say(this.livenessError, explainIdentity(error) + (ended ? "" : " " + t("capture.livenessAgain")), "error");
    this.liveness.dataset.failed = error.code || "UNKNOWN";
    this.startButton.hidden = false;
    this.startButton.textContent = t("capture.livenessRetry");
    if (ended || error.code === "WRONG_STEP") {
      this.startButton.hidden = true;
      // A locked session's video check closes: its reason goes where it stays visible.
      this.fail(error, ended ? this.error : this.livenessError);
    }
  }
}

/** At most `count` items of `list`, evenly spread, the first and the last included. */
function spread(list, count) {
  if (list.length <= count) return list.slice();
  return Array.from({ length: count }, (_, i) => list[Math.round((i * (list.length - 1)) / (count - 1))]);
}

/** FNV-1a over a picture's pixels (every `step`th byte) or its encoded bytes: tells two
 * camera pictures apart (not a security check). */
function pixelHash(data, step = 3) {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i += step) {
    h ^= data[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
