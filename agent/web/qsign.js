// qsign.js: the browser client of the local qsign agent (an ES module, no build step,
// no dependencies). Served by the agent at GET /v1/qsign.js.
//
//   import { connect } from "http://127.0.0.1:35741/v1/qsign.js";
//   const agent = await connect({ port: 35741 });
//   const { tokens } = await agent.listTokens();
//
// The WebSocket handshake succeeds only for an origin the agent allows (its
// configuration or a pairing the person approved outside the page). An unknown
// origin calls `pair({port})` (or `client.pair()`), shows the returned code to the
// person, who runs `qsign agent approve CODE`; then `connect` again.
//
// PINs and OTPs go to the agent over the socket and nowhere else: this module never
// logs, stores or echoes a request's params.

export const DEFAULT_PORT = 35741;

/** A failure the agent reported (or a transport failure), with the wire error code. */
export class QsignError extends Error {
  constructor(code, message, { rpcCode = null, data = null } = {}) {
    super(message || code);
    this.name = "QsignError";
    /** The wire code, e.g. "INVALID_PIN", "NOT_PAIRED", "SAD_INVALID", "CONNECT_FAILED". */
    this.code = code;
    /** The JSON-RPC numeric code when the agent answered with an error. */
    this.rpcCode = rpcCode;
    /** Tries left before the PIN blocks (INVALID_PIN), else null. */
    this.attemptsLeft = data && typeof data.attemptsLeft === "number" ? data.attemptsLeft : null;
    /** The error's `data` object as sent (never contains PINs). */
    this.data = data;
  }
}

function agentBase(host, port) {
  const name = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${name}:${port}`;
}

/**
 * Ask the agent to pair this page's origin. No socket needed (an unpaired origin
 * cannot open one). Resolves to {paired: true} when already allowed, else
 * {paired: false, code, approve} where `code` is what the person approves.
 */
export async function pair({ port = DEFAULT_PORT, host = "127.0.0.1" } = {}) {
  const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "pair/request" });
  let response;
  try {
    // A string body is sent as text/plain: a "simple" CORS request, no preflight.
    // The browser adds this page's Origin; the agent answers with CORS for it.
    response = await fetch(`http://${agentBase(host, port)}/v1/pair`, {
      method: "POST", mode: "cors", credentials: "omit", cache: "no-store", body,
    });
  } catch (cause) {
    throw new QsignError("CONNECT_FAILED", "the qsign agent does not answer", { data: null });
  }
  let reply = null;
  try {
    reply = await response.json();
  } catch (_) {
    reply = null;
  }
  if (reply && reply.error) {
    const error = typeof reply.error === "string" ? { data: { error: reply.error } } : reply.error;
    const data = error.data || null;
    throw new QsignError((data && data.error) || "BAD_REQUEST", error.message,
                         { rpcCode: error.code ?? null, data });
  }
  if (!response.ok || !reply || !reply.result) {
    throw new QsignError("BAD_REQUEST", `pairing failed (HTTP ${response.status})`);
  }
  const result = reply.result;
  return result.paired ? { paired: true }
                       : { paired: false, code: result.code, approve: result.approve };
}

class Client {
  constructor(socket, host, port) {
    this._socket = socket;
    this._host = host;
    this._port = port;
    this._nextId = 1;
    this._pending = new Map();
    this._listeners = new Set();
    this._closed = false;
    socket.addEventListener("message", (event) => this._receive(event.data));
    socket.addEventListener("close", () => this._fail("CONNECTION_CLOSED",
                                                      "the connection to the agent closed"));
  }

  get closed() {
    return this._closed;
  }

  /** One JSON-RPC request; resolves to its result or rejects with a QsignError. */
  call(method, params = undefined) {
    if (this._closed) {
      return Promise.reject(new QsignError("CONNECTION_CLOSED", "the connection is closed"));
    }
    const id = this._nextId++;
    const message = { jsonrpc: "2.0", id, method };
    if (params !== undefined) message.params = params;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      try {
        this._socket.send(JSON.stringify(message));
      } catch (_) {
        this._pending.delete(id);
        reject(new QsignError("CONNECTION_CLOSED", "could not send to the agent"));
      }
    });
  }

  pair() {
    return pair({ port: this._port, host: this._host });
  }

  info() {
    return this.call("info");
  }

  listTokens() {
    return this.call("tokens/list");
  }

  listCredentials(tokenID = undefined) {
    return this.call("credentials/list", tokenID === undefined ? {} : { tokenID });
  }

  credentialInfo(credentialID) {
    return this.call("credentials/info", { credentialID });
  }

  /**
   * Ask the signature service to text an SMS code for exactly these hashes, in the OTP
   * session it opened (`otpSession`, e.g. from the portal's sign/prepare). Resolves to
   * {phoneMasked, expiresIn}. For signPdf the hashes are the SHA-256 of each PDF.
   */
  sendOTP({ credentialID, hashes, otpSession }) {
    return this.call("credentials/sendOTP", {
      credentialID, hashes: hashes.map(toBase64), otpSession,
    });
  }

  /**
   * Two factors for these hashes (base64 strings or Uint8Array/ArrayBuffer digests):
   * the OTP (a TOTP code, or with `otpSession` the SMS code sent by sendOTP), then the
   * PIN, which the token checks.
   */
  async authorize({ credentialID, hashes, pin, otp, otpSession = undefined }) {
    const params = { credentialID, hashes: hashes.map(toBase64), PIN: pin, OTP: otp };
    if (otpSession !== undefined) params.otpSession = otpSession;
    const result = await this.call("credentials/authorize", params);
    return { sad: result.SAD, expiresIn: result.expiresIn };
  }

  /**
   * Sign PDFs (base64 strings or bytes) under one authorisation; resolves to the signed
   * PDFs, base64. With `otpSession`, the SMS code is bound to the SHA-256 of each PDF.
   */
  async signPdf({ credentialID, documents, pin, otp, otpSession = undefined,
                  level = undefined }) {
    const params = { credentialID, documents: documents.map(toBase64), PIN: pin, OTP: otp };
    if (otpSession !== undefined) params.otpSession = otpSession;
    if (level !== undefined) params.level = level;
    const result = await this.call("documents/signPdf", params);
    return result.documents;
  }

  /** Sign the hashes a SAD covers; resolves to base64 signatures, one per hash. */
  async signHash({ credentialID, sad, hashes, idempotencyKey = undefined }) {
    const params = { credentialID, SAD: sad, hashes: hashes.map(toBase64) };
    if (idempotencyKey !== undefined) params.idempotencyKey = idempotencyKey;
    const result = await this.call("signatures/signHash", params);
    return result.signatures;
  }

  /**
   * Prove the second factor for a token before any call that presents its PIN or PUK
   * (changePin, unblockPin, enrollGenerate; else they fail with SECOND_FACTOR_REQUIRED).
   * `otp`: a TOTP code of a credential on the token, or with `otpSession` the SMS code
   * the signature service sent for this token. Resolves to {tokenID, method, expiresIn}:
   * this connection may then use the token's PIN and PUK for `expiresIn` seconds.
   */
  secondFactorVerify({ tokenID, otp, otpSession = undefined }) {
    const params = { tokenID, OTP: otp };
    if (otpSession !== undefined) params.otpSession = otpSession;
    return this.call("secondFactor/verify", params);
  }

  /** Change the token's PIN (the service's rule: 4 to 8 digits); the token checks `pin`. */
  changePin({ tokenID, pin, newPin }) {
    return this.call("pin/change", { tokenID, PIN: pin, newPIN: newPin });
  }

  /** Unblock the PIN with the PUK and set a new one. */
  unblockPin({ tokenID, puk, newPin }) {
    return this.call("pin/unblock", { tokenID, PUK: puk, newPIN: newPin });
  }

  /**
   * A key made on the token for a qualified certificate; resolves to
   * {enrolmentID, publicKey (base64 SPKI), attestation, resumed}. A pending enrolment for
   * the same token and key is resumed: no second key.
   */
  enrollGenerate({ tokenID, pin, keyID = "9C", keyType = "EC_P256" }) {
    return this.call("enroll/generate", { tokenID, keyID, keyType, PIN: pin });
  }

  /**
   * Send the request with the identity evidence (a compact JWS from the signature
   * service) to the agent's CA and write the certificate to the token; resolves to
   * {credentialID, certificate, chain, serial, notAfter}. Safe to retry.
   */
  enrollComplete({ enrolmentID, evidence }) {
    return this.call("enroll/complete", { enrolmentID, evidence });
  }

  /** Token insert/remove events: onEvent({kind, tokenID, token}). Returns an unsubscribe. */
  async subscribe(onEvent) {
    this._listeners.add(onEvent);
    if (this._listeners.size === 1) {
      await this.call("tokens/subscribe");
    }
    return () => this._listeners.delete(onEvent);
  }

  close() {
    if (!this._closed) {
      this._socket.close(1000);
      this._fail("CONNECTION_CLOSED", "the connection was closed by the page");
    }
  }

  _fail(code, message) {
    this._closed = true;
    for (const { reject } of this._pending.values()) reject(new QsignError(code, message));
    this._pending.clear();
  }

  _receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (message === null || typeof message !== "object") return;
    if (message.id === undefined || message.id === null) {
      if (message.method === "tokens/event") {
        for (const listener of this._listeners) {
          try {
            listener(message.params);
          } catch (_) {
            // a listener's failure is the page's own business
          }
        }
      } else if (message.error) {
        // An error that names no request (e.g. RATE_LIMITED): fail the oldest one.
        const first = this._pending.keys().next();
        if (!first.done) this._settle(first.value, message);
      }
      return;
    }
    this._settle(message.id, message);
  }

  _settle(id, message) {
    const waiter = this._pending.get(id);
    if (!waiter) return;
    this._pending.delete(id);
    if (message.error) {
      const data = message.error.data || null;
      waiter.reject(new QsignError((data && data.error) || "INTERNAL", message.error.message,
                                   { rpcCode: message.error.code, data }));
    } else {
      waiter.resolve(message.result);
    }
  }
}

/**
 * Open the agent's socket. Rejects with QsignError("CONNECT_FAILED") when the agent
 * is not running or refuses this origin (browsers hide the handshake's status: an
 * unknown origin should try `pair()`).
 */
export async function connect({ port = DEFAULT_PORT, host = "127.0.0.1", timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    let socket;
    try {
      socket = new WebSocket(`ws://${agentBase(host, port)}/v1/ws`);
    } catch (_) {
      reject(new QsignError("CONNECT_FAILED", "cannot open a socket to the agent"));
      return;
    }
    let settled = false;
    const timer = setTimeout(() => finish(false), timeoutMs);
    function finish(opened) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeEventListener("open", onOpen);
      socket.removeEventListener("error", onFailure);
      socket.removeEventListener("close", onFailure);
      if (opened) {
        resolve(new Client(socket, host, port));
      } else {
        try { socket.close(); } catch (_) { /* already closed */ }
        reject(new QsignError("CONNECT_FAILED",
                              "the agent refused the connection (not running, or this " +
                              "origin is not allowed: pair it first)"));
      }
    }
    const onOpen = () => finish(true);
    const onFailure = () => finish(false);
    socket.addEventListener("open", onOpen);
    socket.addEventListener("error", onFailure);
    socket.addEventListener("close", onFailure);
  });
}

/** base64 of a digest given as ArrayBuffer / typed array; strings pass through. */
export function toBase64(value) {
  if (typeof value === "string") return value;
  const bytes = value instanceof ArrayBuffer ? new Uint8Array(value)
    : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

/** SHA-256 of a string (UTF-8) or bytes with WebCrypto; needs a secure context. */
export async function sha256(data) {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    throw new QsignError("UNSUPPORTED", "WebCrypto needs a secure context (https)");
  }
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
}
