"""Stand-ins for the orchestrator and the worker, for the gateway's own tests.

FakeOrchestrator serves POST and DELETE /v1/sessions on a loopback port from a
thread of the test process and records every call. For each new session it
starts a StandInWorker thread that follows the worker's wire contract: state
notifications, a heartbeat key, BLMOVE from the session queue, one published
message per queue item. Datasets:
- "flights", "slow" (1 s of loading): a worker that responds to ping, echo,
  whoami and emit_notification, and never to "blackhole";
- "stalled": no worker at all, so requests stay queued;
- "broken": a worker that reports failed with a message;
- "busy": HTTP 503 with Retry-After; anything else: HTTP 422.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import uvicorn
from bellhop_shared.keys import Keys
from fastapi import FastAPI, Header, HTTPException, Response
from support import free_port, wait_for_port

DATASETS = ("flights", "slow", "stalled", "broken", "busy")
KEYS = Keys()


@dataclass
class Call:
    method: str
    session_id: str
    body: dict[str, Any]
    authorization: str | None


class StandInWorker(threading.Thread):
    """A worker loop on a thread: enough of the worker for the gateway's tests."""

    def __init__(self, redis_url: str, session_id: str, dataset: str) -> None:
        super().__init__(daemon=True, name=f"stand-in-{session_id[:8]}")
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.session_id = session_id
        self.dataset = dataset
        self.worker_id = f"w-stand-{session_id[:6]}"
        self.items: list[Any] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except redis.RedisError:
            if not self.stopped.is_set():
                raise

    def _run(self) -> None:
        self._state("starting", 0.0, "")
        if self.dataset == "broken":
            self._state("failed", 0.0, "Dataset 'broken' is missing: no such file.")
            return
        load_s = 1.0 if self.dataset == "slow" else 0.1
        for step in (0.25, 0.5, 0.75):
            self._state("loading", step, f"loading {self.dataset}")
            time.sleep(load_s / 3)
        self._state("ready", 1.0, "")
        last_beat = time.monotonic()
        while not self.stopped.is_set():
            self._serve_one()
            if time.monotonic() - last_beat > 1.0:
                self._beat("ready", 1.0, "")
                last_beat = time.monotonic()

    def _serve_one(self) -> None:
        queue, inflight = KEYS.queue(self.session_id), KEYS.inflight(self.session_id)
        text = self.redis.blmove(queue, inflight, 0.2, "RIGHT", "LEFT")
        if text is None:
            return
        item = json.loads(text)
        self.items.append(item)
        reply = self._answer(item)
        if reply is not None:
            self.redis.publish(KEYS.results(self.session_id), json.dumps(reply))
        self.redis.lrem(inflight, 1, text)

    def _answer(self, item: Any) -> Any:
        if isinstance(item, list):
            replies = [self._answer_one(request) for request in item]
            replies = [reply for reply in replies if reply is not None]
            return replies or None
        return self._answer_one(item)

    def _answer_one(self, request: dict[str, Any]) -> dict[str, Any] | None:
        method = request["method"]
        if method == "emit_notification":
            note = {"jsonrpc": "2.0", "method": "custom.note", "params": {"n": 1}}
            self.redis.publish(KEYS.results(self.session_id), json.dumps(note))
        if "id" not in request or method == "blackhole":
            return None
        results = {
            "ping": {"pong": True, "worker_id": self.worker_id},
            "echo": request.get("params"),
            "whoami": {"session_id": self.session_id},
            "emit_notification": {"sent": True},
        }
        if method not in results:
            error = {"code": -32601, "message": f"Method not found: {method!r}."}
            return {"jsonrpc": "2.0", "id": request["id"], "error": error}
        return {"jsonrpc": "2.0", "id": request["id"], "result": results[method]}

    def _state(self, state: str, progress: float, message: str) -> None:
        params = {
            "state": state,
            "progress": progress,
            "message": message,
            "worker_id": self.worker_id,
        }
        note = {"jsonrpc": "2.0", "method": "worker.state", "params": params}
        self._beat(state, progress, message)
        self.redis.publish(KEYS.results(self.session_id), json.dumps(note))

    def _beat(self, state: str, progress: float, message: str) -> None:
        heartbeat = {
            "worker_id": self.worker_id,
            "session_id": self.session_id,
            "dataset": self.dataset,
            "state": state,
            "progress": progress,
            "message": message,
            "pid": os.getpid(),
            "updated_at": time.time(),
        }
        self.redis.set(KEYS.worker(self.session_id), json.dumps(heartbeat), ex=5)

    def stop(self) -> None:
        self.stopped.set()


@dataclass
class FakeOrchestrator:
    """The orchestrator's session API, on a thread, recording every call."""

    redis_url: str
    token: str
    calls: list[Call] = field(default_factory=list)
    workers: dict[str, StandInWorker] = field(default_factory=dict)
    url: str = ""

    def start(self) -> None:
        port = free_port()
        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for_port(port)
        self.url = f"http://127.0.0.1:{port}"

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def stop(self) -> None:
        self.stop_workers()
        self._server.should_exit = True
        self._thread.join(10)

    def calls_for(self, session_id: str, method: str | None = None) -> list[Call]:
        return [
            call
            for call in self.calls
            if call.session_id == session_id and method in (None, call.method)
        ]

    def _check_token(self, authorization: str | None) -> None:
        if authorization != f"Bearer {self.token}":
            raise HTTPException(401, "missing or wrong bearer token")

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/sessions")
        def create(
            body: dict[str, Any],
            response: Response,
            authorization: str | None = Header(None),
        ) -> dict[str, Any]:
            session_id = body["session_id"]
            self.calls.append(Call("POST", session_id, body, authorization))
            self._check_token(authorization)
            return self._create(session_id, body, response)

        @app.delete("/v1/sessions/{session_id}")
        def delete(
            session_id: str, authorization: str | None = Header(None)
        ) -> dict[str, Any]:
            self.calls.append(Call("DELETE", session_id, {}, authorization))
            self._check_token(authorization)
            return self._delete(session_id)

        return app

    def _create(
        self, session_id: str, body: dict[str, Any], response: Response
    ) -> dict[str, Any]:
        dataset = body["dataset"]
        if dataset == "busy":
            raise HTTPException(
                503, "the limit of 0 sessions is reached", headers={"Retry-After": "7"}
            )
        if dataset not in DATASETS:
            raise HTTPException(
                422, f"Unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}."
            )
        if session_id in self.workers or dataset == "stalled":
            response.status_code = 200
        else:
            response.status_code = 201
            worker = StandInWorker(self.redis_url, session_id, dataset)
            self.workers[session_id] = worker
            worker.start()
        return self._record(session_id, dataset, "starting")

    def _delete(self, session_id: str) -> dict[str, Any]:
        worker = self.workers.pop(session_id, None)
        if worker is None:
            raise HTTPException(404, f"no session {session_id}")
        worker.stop()
        worker.join(5)
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        client.delete(*KEYS.session_keys(session_id))
        note = {
            "jsonrpc": "2.0",
            "method": "session.ended",
            "params": {"reason": "deleted"},
        }
        client.publish(KEYS.results(session_id), json.dumps(note))
        return self._record(session_id, worker.dataset, "ended")

    def _record(self, session_id: str, dataset: str, state: str) -> dict[str, Any]:
        worker = self.workers.get(session_id)
        return {
            "session_id": session_id,
            "dataset": dataset,
            "state": state,
            "worker_id": worker.worker_id if worker else None,
            "provider": "stand-in",
        }
