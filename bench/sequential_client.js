"use strict";
/**
 * Sequential Socket.IO client of the end-to-end benchmark, on the library
 * browsers run (socket.io-client).
 *
 *   NODE_PATH=services/gateway/node_modules node bench/sequential_client.js CONFIG_JSON
 *
 * CONFIG_JSON holds: gateway_url, echo_url (the bare echo server of
 * bench/echo_server.py), dataset, ready_timeout_s and request_timeout_ms.
 *
 * It opens one websocket-only connection to the gateway with auth
 * {dataset} and one to the echo server, waits until the gateway's `session`
 * event reports the state `ready`, and writes a `ready` line. Then it reads
 * commands from stdin, one JSON object per line, and runs them in order.
 * A command
 *
 *   {"target": "path" | "echo", "count": N, "request": {JSON-RPC request}}
 *
 * makes N `rpc` emits with acknowledgement on the gateway (path) or echo
 * connection, one at a time, each with a timeout of request_timeout_ms.
 * Each call sends a copy of the request whose `id` is the next number of a
 * counter shared by all commands. When the block ends, the client writes
 *
 *   {"event": "block", "target": ..., "elapsed_ms": [...], "took_ms": [...]}
 *
 * with the time from each emit to its acknowledgement (performance.now()),
 * and for the path each response's result.took_ms (an empty list for echo).
 *
 * Stdout carries one JSON object per line: `ready` (with session_id and
 * node_version), `block`, or `failed` (with message). A JSON-RPC error, a
 * response without the request's id, a timeout, a disconnect, a session
 * that leaves `ready` or an invalid command writes `failed` and exits with
 * code 1. After `ready`, a `close` line or the end of stdin closes both
 * connections and exits with code 0. The end of stdin before `ready` is a
 * failure. Progress goes to stderr.
 */

const { io } = require("socket.io-client");
const { performance } = require("node:perf_hooks");
const readline = require("node:readline");

const FINAL_STATES = new Set(["ready", "failed", "ended"]);

function writeEvent(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function logProgress(message) {
  process.stderr.write(`[sequential] ${message}\n`);
}

function fail(message) {
  writeEvent("failed", { message });
  logProgress(`failed: ${message}`);
  process.exit(1);
}

let closing = false;

/** Open a websocket-only connection that fails the process when it drops. */
function connect(name, url, auth) {
  const socket = io(url, {
    auth,
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    timeout: 60_000,
  });
  socket.on("connect_error", (error) =>
    fail(`${name} connection to ${url} failed: ${error.message}`),
  );
  socket.on("disconnect", (reason) => {
    if (!closing) {
      fail(`${name} connection disconnected: ${reason}`);
    }
  });
  return socket;
}

function waitConnected(socket) {
  if (socket.connected) {
    return Promise.resolve();
  }
  return new Promise((resolve) => socket.once("connect", resolve));
}

/** Resolve with the gateway's `ready` event, or fail on another final state. */
function waitReady(gateway, timeoutS) {
  return new Promise((resolve) => {
    const timer = setTimeout(
      () => fail(`timed out after ${timeoutS} s waiting for the session to be ready`),
      timeoutS * 1000,
    );
    let ready = false;
    gateway.on("session", (data) => {
      if (!FINAL_STATES.has(data.state)) {
        return;
      }
      if (ready || data.state !== "ready") {
        fail(`session ${data.session_id} is ${data.state}: ${data.message}`);
      }
      ready = true;
      clearTimeout(timer);
      resolve(data);
    });
  });
}

/** Send one request and resolve with [elapsed ms, response], or fail on an error. */
function timedCall(socket, target, request, timeoutMs) {
  return new Promise((resolve) => {
    const started = performance.now();
    socket.timeout(timeoutMs).emit("rpc", request, (error, response) => {
      const elapsed = performance.now() - started;
      if (error) {
        fail(`${target} request ${request.id} failed: ${error.message}`);
      }
      if (response && response.error) {
        const { code, message } = response.error;
        fail(`${target} request ${request.id}: JSON-RPC error ${code}: ${message}`);
      }
      if (!response || response.id !== request.id) {
        const text = JSON.stringify(response);
        fail(`${target} request ${request.id}: unexpected response ${text}`);
      }
      resolve([elapsed, response]);
    });
  });
}

async function runBlock(sockets, command, nextId, timeoutMs) {
  const target = command.target;
  const socket = sockets[target];
  if (socket === undefined) {
    fail(`unknown target ${JSON.stringify(target)}; expected path or echo`);
  }
  if (!Number.isInteger(command.count) || command.count < 1) {
    fail(`invalid count ${JSON.stringify(command.count)}; expected a positive integer`);
  }
  const elapsedMs = [];
  const tookMs = [];
  for (let number = 0; number < command.count; number += 1) {
    const request = { ...command.request, id: nextId() };
    const [elapsed, response] = await timedCall(socket, target, request, timeoutMs);
    elapsedMs.push(elapsed);
    if (target === "path") {
      const took = response.result && response.result.took_ms;
      if (typeof took !== "number") {
        fail(`path request ${request.id}: the result has no took_ms`);
      }
      tookMs.push(took);
    }
  }
  writeEvent("block", { target, elapsed_ms: elapsedMs, took_ms: tookMs });
}

async function main() {
  const config = JSON.parse(process.argv[2]);
  // The iterator is created now so that it buffers lines sent before `ready`.
  // A parent that exits before then closes stdin, which ends this process too.
  const lines = readline.createInterface({ input: process.stdin });
  const commands = lines[Symbol.asyncIterator]();
  let started = false;
  lines.on("close", () => {
    if (!started) {
      fail("stdin closed before the session was ready");
    }
  });

  const gateway = connect("gateway", config.gateway_url, { dataset: config.dataset });
  const echo = connect("echo", config.echo_url, {});
  const session = await waitReady(gateway, config.ready_timeout_s);
  await waitConnected(echo);
  writeEvent("ready", { session_id: session.session_id, node_version: process.version });
  logProgress(`session ${session.session_id} ready`);

  started = true;
  const sockets = { path: gateway, echo };
  let lastId = 0;
  const nextId = () => (lastId += 1);
  for await (const line of commands) {
    if (line.trim() === "close") {
      break;
    }
    if (line.trim() === "") {
      continue;
    }
    await runBlock(sockets, JSON.parse(line), nextId, config.request_timeout_ms);
  }
  closing = true;
  gateway.disconnect();
  echo.disconnect();
  // Let the websocket close frames go out before the process exits.
  await new Promise((resolve) => setTimeout(resolve, 200));
}

main().then(
  () => process.exit(0),
  (error) => {
    logProgress(error && error.stack ? error.stack : String(error));
    fail(error && error.message ? error.message : String(error));
  },
);
