"use strict";
/**
 * Open-loop load generator for the concurrent-sessions benchmark.
 *
 *   NODE_PATH=services/gateway/node_modules node bench/load_generator.js CONFIG_JSON
 *
 * CONFIG_JSON holds: urls (gateway URLs, sessions alternate between them),
 * sessions, dataset, filters (the `filter` params to rotate over),
 * interval_ms, duration_s, max_unanswered, request_timeout_ms,
 * warmup_timeout_ms, connect_batch, ready_timeout_s, ready_attempts,
 * ready_retry_delay_ms, phases_ms (each session's offset on its grid) and
 * per_message_deflate (whether to offer
 * websocket compression, as browsers do).
 *
 * It opens one Socket.IO connection per session, waits until every session
 * reports the state `ready`, sends each filter shape once per session to warm
 * up, then runs the schedule: each session sends on its own grid of
 * interval_ms with a random phase, whether or not earlier requests were
 * acknowledged. A session with max_unanswered requests in flight skips the send
 * and records it as shed, so an overloaded system shows shed load and
 * latency instead of a backlog that grows without bound.
 *
 * Stdout carries one JSON object per line, each with an `event` field:
 * `connected`, `ready`, `load_start` (written at the first instant of the
 * schedule), `load_end` (written when the schedule ends), `results`, or
 * `failed`. After `results` the connections stay open and idle until a
 * `close` line (or end of file) arrives on stdin. Progress goes to stderr.
 */

const { io } = require("socket.io-client");
const { performance } = require("node:perf_hooks");
const readline = require("node:readline");

const FINAL_STATES = new Set(["ready", "failed", "ended"]);
const START_DELAY_MS = 500;

function writeEvent(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function logProgress(message) {
  process.stderr.write(`[load] ${message}\n`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function filterRequest(id, params) {
  return { jsonrpc: "2.0", id, method: "filter", params };
}

function rounded(value) {
  return Math.round(value * 1000) / 1000;
}

/** One session's Socket.IO connection and the `session` events it received. */
class Session {
  constructor(index, url, dataset, perMessageDeflate) {
    this.index = index;
    this.url = url;
    this.dataset = dataset;
    this.perMessageDeflate = perMessageDeflate;
    this.unanswered = 0;
    this.provisionFailures = [];
    this.open();
  }

  /** Open a new connection, which requests a new session from the gateway. */
  open() {
    this.state = null;
    this.stateMessage = "";
    this.disconnectReason = null;
    this.stateWaiters = [];
    const socket = io(this.url, {
      auth: { dataset: this.dataset },
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 60_000,
      // false turns off the permessage-deflate offer that browsers always make.
      perMessageDeflate: this.perMessageDeflate ? { threshold: 1024 } : false,
    });
    socket.on("session", (data) => this.onSession(data));
    socket.on("disconnect", (reason) => {
      if (socket === this.socket) {
        this.disconnectReason = String(reason);
        this.notifyStateWaiters();
      }
    });
    this.socket = socket;
  }

  onSession(data) {
    if (this.state !== null && FINAL_STATES.has(this.state)) {
      return;
    }
    this.state = data.state;
    this.stateMessage = data.message || "";
    this.notifyStateWaiters();
  }

  notifyStateWaiters() {
    for (const wake of this.stateWaiters.splice(0)) {
      wake();
    }
  }

  waitConnected() {
    if (this.socket.connected) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.socket.once("connect", resolve);
      this.socket.once("connect_error", (error) =>
        reject(new Error(`session ${this.index} failed to connect: ${error.message}`)),
      );
    });
  }

  /**
   * Resolve when the session is ready. A session that fails or disconnects
   * before it is ready is opened again after retryDelayMs, up to maxAttempts
   * connections in all, and each failure is kept in provisionFailures.
   */
  async waitReady(deadline, maxAttempts, retryDelayMs) {
    for (let attempt = 1; ; attempt += 1) {
      const failure = await this.waitFinalState(deadline);
      if (failure === null) {
        return;
      }
      if (attempt >= maxAttempts) {
        throw new Error(`session ${this.index} ${failure} (attempt ${attempt})`);
      }
      this.provisionFailures.push(failure);
      logProgress(`session ${this.index} ${failure}; opening it again`);
      this.socket.disconnect();
      await sleep(retryDelayMs);
      this.open();
      await this.waitConnected();
    }
  }

  /** Wait for a final state; return null when ready, else what went wrong. */
  async waitFinalState(deadline) {
    while (this.state === null || !FINAL_STATES.has(this.state)) {
      if (this.disconnectReason !== null) {
        return `disconnected before ready: ${this.disconnectReason}`;
      }
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        throw new Error(`session ${this.index} timed out waiting for ready`);
      }
      await new Promise((resolve) => {
        this.stateWaiters.push(resolve);
        setTimeout(resolve, Math.min(remaining, 1000));
      });
    }
    if (this.state !== "ready") {
      return `ended in state ${this.state}: ${this.stateMessage}`;
    }
    return null;
  }

  /**
   * Send one request and call done(outcome, detail) once: outcome is ok,
   * rpc_error, timeout or disconnected.
   */
  send(request, timeoutMs, done) {
    if (!this.socket.connected) {
      done("disconnected", `not connected: ${this.disconnectReason}`);
      return;
    }
    this.unanswered += 1;
    this.socket.timeout(timeoutMs).emit("rpc", request, (error, response) => {
      this.unanswered -= 1;
      if (error) {
        const timedOut = error.message.includes("timed out");
        done(timedOut ? "timeout" : "disconnected", error.message);
      } else if (response && response.error) {
        const { code, message } = response.error;
        done("rpc_error", `JSON-RPC error ${code}: ${message}`);
      } else {
        done("ok", null);
      }
    });
  }

  call(request, timeoutMs) {
    return new Promise((resolve, reject) => {
      this.send(request, timeoutMs, (outcome, detail) => {
        if (outcome === "ok") {
          resolve();
        } else {
          reject(new Error(`session ${this.index} warm-up ${outcome}: ${detail}`));
        }
      });
    });
  }

  close() {
    this.socket.disconnect();
  }
}

/** Open the connections in batches, since each connect provisions a worker. */
async function connectAll(config) {
  const sessions = [];
  for (let first = 0; first < config.sessions; first += config.connect_batch) {
    const last = Math.min(first + config.connect_batch, config.sessions);
    const batch = [];
    for (let index = first; index < last; index += 1) {
      const url = config.urls[index % config.urls.length];
      batch.push(new Session(index, url, config.dataset, config.per_message_deflate));
    }
    sessions.push(...batch);
    await Promise.all(batch.map((session) => session.waitConnected()));
  }
  return sessions;
}

async function warmUp(session, config) {
  for (let number = 0; number < config.filters.length; number += 1) {
    const request = filterRequest(-1 - number, config.filters[number]);
    await session.call(request, config.warmup_timeout_ms);
  }
}

/**
 * Run the open-loop schedule of every session; resolve with one record per
 * scheduled send once every request was acknowledged, timed out or failed.
 */
function runSchedule(sessions, config) {
  const records = [];
  let pending = 0;
  // Sessions with a send still to come. A late timer may run a send after
  // load_end, so the results wait for every session's last send as well.
  let activeSchedules = sessions.length;
  let endWritten = false;
  let resolveDone;
  const done = new Promise((resolve) => {
    resolveDone = resolve;
  });
  const finishIfDrained = () => {
    if (endWritten && activeSchedules === 0 && pending === 0) {
      resolveDone(records);
    }
  };

  const start = performance.now() + START_DELAY_MS;
  const durationMs = config.duration_s * 1000;
  const end = start + durationMs;
  setTimeout(() => writeEvent("load_start"), start - performance.now());
  setTimeout(() => {
    writeEvent("load_end");
    endWritten = true;
    finishIfDrained();
  }, end - performance.now());

  for (const session of sessions) {
    const phase = config.phases_ms[session.index];
    let number = 0;
    const fire = () => {
      const scheduled = start + phase + number * config.interval_ms;
      const sent = performance.now();
      if (sent < scheduled) {
        // Node timers count from the event loop's cached, whole-millisecond
        // clock, so one can fire up to a millisecond before the grid.
        setTimeout(fire, Math.ceil(scheduled - sent));
        return;
      }
      const params = config.filters[number % config.filters.length];
      const record = {
        session: session.index,
        lag_ms: rounded(sent - scheduled),
        latency_ms: null,
        done_ms: null,
        outcome: "shed",
        detail: null,
      };
      records.push(record);
      if (session.unanswered < config.max_unanswered) {
        pending += 1;
        const request = filterRequest(number, params);
        session.send(request, config.request_timeout_ms, (outcome, detail) => {
          const now = performance.now();
          record.latency_ms = rounded(now - sent);
          record.done_ms = rounded(now - start);
          record.outcome = outcome;
          record.detail = detail;
          pending -= 1;
          finishIfDrained();
        });
      }
      number += 1;
      const next = start + phase + number * config.interval_ms;
      if (next < end) {
        setTimeout(fire, Math.ceil(next - performance.now()));
      } else {
        activeSchedules -= 1;
        finishIfDrained();
      }
    };
    setTimeout(fire, Math.ceil(start + phase - performance.now()));
  }
  return done;
}

/** Resolve on a `close` line or the end of stdin. */
function waitForClose() {
  return new Promise((resolve) => {
    const lines = readline.createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      if (line.trim() === "close") {
        resolve();
      }
    });
    lines.on("close", resolve);
  });
}

async function main() {
  const config = JSON.parse(process.argv[2]);
  const closeRequested = waitForClose();
  const started = performance.now();
  const sessions = await connectAll(config);
  writeEvent("connected", { sessions: sessions.length });
  logProgress(`${sessions.length} connected; waiting for their workers`);

  const deadline = performance.now() + config.ready_timeout_s * 1000;
  await Promise.all(
    sessions.map((session) =>
      session.waitReady(deadline, config.ready_attempts, config.ready_retry_delay_ms),
    ),
  );
  const provisionFailures = sessions.flatMap((session) => session.provisionFailures);
  writeEvent("ready", {
    ready_s: rounded((performance.now() - started) / 1000),
    provision_failures: provisionFailures,
  });
  logProgress("all sessions ready; warming up");

  await Promise.all(sessions.map((session) => warmUp(session, config)));
  logProgress(`load for ${config.duration_s} s`);
  const records = await runSchedule(sessions, config);
  const disconnected = sessions.filter((s) => !s.socket.connected).length;
  writeEvent("results", { records, disconnected });
  logProgress(`results written; ${disconnected} sessions disconnected`);

  await closeRequested;
  sessions.forEach((session) => session.close());
  await sleep(200);
}

main().then(
  () => process.exit(0),
  (error) => {
    const message = error && error.message ? error.message : String(error);
    writeEvent("failed", { message });
    logProgress(`failed: ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  },
);
