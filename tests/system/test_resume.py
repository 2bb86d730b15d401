"""Resume after a disconnect, with the real orchestrator's reaper running."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis
from client import SessionClient
from support import wait_until
from system_support import start_system

RESUME_GRACE_S = 8.0
ORCHESTRATOR_GRACE_S = 1.0


def test_resume_outlasts_orchestrator_grace(redis_url: str, tmp_path: Path) -> None:
    system = start_system(
        redis_url,
        tmp_path,
        GATEWAY_RESUME_GRACE_S=str(RESUME_GRACE_S),
        GATEWAY_GRACE_S=str(ORCHESTRATOR_GRACE_S),
        REAPER_INTERVAL_S="0.5",
    )
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        first = SessionClient(system.gateway_url)
        ready = first.wait_ready()
        session_id = first.session_id
        worker_before = worker_id(store, session_id)
        first.close()

        # Longer than the orchestrator's grace and several reaper rounds,
        # shorter than the gateway's resume grace.
        time.sleep(ORCHESTRATOR_GRACE_S + 3)
        second = SessionClient(
            system.gateway_url,
            {"session": session_id, "resume": ready["resume_token"]},
        )
        try:
            second.wait_ready()
            response = second.rpc({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        finally:
            second.close()
    finally:
        system.stop()

    assert second.session_id == session_id
    assert response["result"]["worker_id"] == worker_before
    # The Redis of the test run is shared, so other tests' sessions may be
    # reaped in this log; only this session must not be.
    ending = f"session {session_id} ending reason=client_gone"
    assert ending not in system.orchestrator.log_text()


def worker_id(store: redis.Redis, session_id: str) -> str:
    heartbeat = wait_until(
        lambda: store.get(f"bellhop:session:{session_id}:worker"), 30
    )
    return str(json.loads(str(heartbeat))["worker_id"])
