// Bellhop session: the Socket.IO connection, its resume credentials and rpc.
//
// The session id and resume token live in sessionStorage, so a reload of this
// tab within the gateway's grace period re-attaches to the same worker. A
// resume the gateway rejects (the session ended meanwhile) starts a new one.
"use strict";

window.BellhopSession = (function () {
  const STORAGE_KEY = "bellhop.session";
  const TOKEN_KEY = "bellhop.token";
  const RPC_TIMEOUT_MS = 65000;
  const RATE_LIMITED = -32001;
  const RESUME_ERRORS = new Set([
    "session_not_found",
    "invalid_resume_token",
    "session_forbidden",
  ]);

  let socket = null;
  let dataset = "flights";
  let requestCount = 0;

  function storedSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      return saved && saved.dataset === dataset ? saved : null;
    } catch (error) {
      return null;
    }
  }

  function storeSession(event) {
    const saved = {
      session_id: event.session_id,
      resume_token: event.resume_token,
      dataset: dataset,
    };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(saved));
  }

  function forget() {
    sessionStorage.removeItem(STORAGE_KEY);
  }

  function connectAuth() {
    const auth = {};
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) auth.token = token;
    const saved = storedSession();
    if (saved) {
      auth.session = saved.session_id;
      auth.resume = saved.resume_token;
    } else {
      auth.dataset = dataset;
    }
    return auth;
  }

  // Open the connection; handlers: onSession, onOffline, onDisconnect.
  function open(datasetName, handlers) {
    dataset = datasetName;
    if (typeof io !== "function") {
      throw new Error("The Socket.IO client did not load; see /vendor/socket.io.min.js.");
    }
    socket = io({
      transports: ["websocket"],
      auth: (send) => send(connectAuth()),
      reconnectionDelayMax: 5000,
    });
    socket.on("session", (event) => {
      if (event.state === "ended" || event.state === "failed") forget();
      else storeSession(event);
      handlers.onSession(event);
    });
    socket.on("connect_error", (error) => {
      const code = error && error.data && error.data.code;
      if (RESUME_ERRORS.has(code)) {
        forget();
        socket.connect();
        return;
      }
      handlers.onOffline("Cannot connect: " + (error && error.message));
    });
    socket.on("disconnect", handlers.onDisconnect);
    socket.on("notification", (note) => console.info("notification", note));
  }

  function rpc(payload) {
    return new Promise((resolve, reject) => {
      socket.timeout(RPC_TIMEOUT_MS).emit("rpc", payload, (error, response) => {
        if (!error) resolve(response);
        else if (socket.connected) reject(new Error("the gateway did not respond in time"));
        // socket.io-client fails waiting calls when the connection drops. The
        // explorer sends its query again once the resumed session is ready.
        else reject(new Error("the connection dropped before the response arrived"));
      });
    });
  }

  function request(method, params) {
    requestCount += 1;
    return { jsonrpc: "2.0", id: requestCount, method: method, params: params };
  }

  // Return a response's result, or throw its JSON-RPC error. The thrown Error
  // keeps the error's code and data (e.g. {"setting": "range", "field": "x"}).
  function resultOf(response) {
    if (!response) throw new Error("empty response");
    if (response.error) {
      const error = new Error(response.error.message);
      error.code = response.error.code;
      error.data = response.error.data;
      throw error;
    }
    return response.result;
  }

  // Throw the first rate-limit error of a response or batch response, so the
  // caller can wait and send again before it reads any result.
  function checkRateLimit(response) {
    const entries = Array.isArray(response) ? response : [response];
    for (const entry of entries) {
      if (entry && entry.error && entry.error.code === RATE_LIMITED) resultOf(entry);
    }
  }

  // Return the wait in ms that a rate-limit error gives in retry_after_s, or
  // null when sending the request again cannot help. The gateway leaves out
  // retry_after_s for a batch larger than its burst.
  function retryDelayMs(error) {
    if (!error || error.code !== RATE_LIMITED || !error.data) return null;
    const seconds = error.data.retry_after_s;
    return typeof seconds === "number" && seconds >= 0 ? seconds * 1000 : null;
  }

  // Send payload. While the gateway rate-limits it, wait the error's
  // retry_after_s and send it again.
  async function rpcRetrying(payload) {
    for (;;) {
      const response = await rpc(payload);
      try {
        checkRateLimit(response);
        return response;
      } catch (error) {
        const delayMs = retryDelayMs(error);
        if (delayMs === null) return response;
        await sleep(delayMs);
      }
    }
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  return {
    open,
    rpc,
    rpcRetrying,
    request,
    resultOf,
    checkRateLimit,
    retryDelayMs,
    sleep,
    forget,
  };
})();
