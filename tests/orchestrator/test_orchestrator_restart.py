"""A restarted orchestrator adopts the workers its records name and stops the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import redis
from bellhop_shared.keys import new_session_id
from orchestrator_support import (
    STANDIN_WORKER,
    OrchestratorFactory,
    local_worker_pids,
    ref_pid,
)
from support import pid_alive, service_env, wait_until

DATASET = "synthetic-1k"
REAPER_INTERVAL_S = 2.0


def record_of(redis_client: redis.Redis, session_id: str) -> dict:
    raw = redis_client.hget("bellhop:sessions", session_id)
    return json.loads(raw) if raw else {}


def test_restart_adopts_known_and_stops_unknown_workers(
    orchestrator_factory: OrchestratorFactory,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    interval = {"REAPER_INTERVAL_S": f"{REAPER_INTERVAL_S:g}"}
    first = orchestrator_factory("first", **interval)
    known_records = [first.create(dataset=DATASET).json()]
    lost = first.create(dataset=DATASET).json()
    for record in [*known_records, lost]:
        sid = record["session_id"]
        wait_until(
            lambda sid=sid: record_of(redis_client, sid)["state"] == "running", 30
        )

    first.process.proc.kill()
    first.process.proc.wait()
    # The lost session's record disappears, so its worker is unknown.
    redis_client.hdel("bellhop:sessions", lost["session_id"])
    second = orchestrator_factory("second", **interval)

    wait_until(lambda: not pid_alive(ref_pid(lost)), 2 * REAPER_INTERVAL_S)
    for record in known_records:
        assert pid_alive(ref_pid(record))
        current = record_of(redis_client, record["session_id"])
        assert current["state"] == "running"
        assert current["provider_ref"] == record["provider_ref"]
    assert "is orphaned; stopping it reason=orphan" in second.process.log_text()

    for record in known_records:
        response = second.request("DELETE", f"/v1/sessions/{record['session_id']}")
        assert response.status_code == 200
        assert not pid_alive(ref_pid(record))
    assert local_worker_pids(redis_url) == []


def test_restart_adopts_worker_whose_ref_was_never_saved(
    orchestrator_factory: OrchestratorFactory,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    # One id in 64 starts with "-", which a command line can mistake for an
    # option; this test always uses such an id.
    session_id = "-" + new_session_id()[1:]
    now = time.time()
    record = {
        "session_id": session_id,
        "dataset": DATASET,
        "user": None,
        "state": "starting",
        "worker_id": "w-0000abcd",
        "provider": "local",
        "provider_ref": None,
        "created_at": now,
        "updated_at": now,
        "ended_reason": None,
    }
    redis_client.hset("bellhop:sessions", session_id, json.dumps(record))
    # A worker as the local provider starts it, whose orchestrator died
    # before it wrote the provider_ref back.
    env = service_env(
        redis_url,
        WORKER_ID="w-0000abcd",
        BELLHOP_PROVIDER="local",
        BELLHOP_KEY_PREFIX="bellhop:",
        WORKER_HEARTBEAT_INTERVAL_S="0.5",
    )
    argv = [sys.executable, str(STANDIN_WORKER), "--session", session_id]
    worker = subprocess.Popen([*argv, "--dataset", DATASET], env=env)
    try:
        wait_until(lambda: pid_alive(worker.pid), 10)
        orchestrator_factory()

        def adopted_ref() -> str | None:
            return record_of(redis_client, session_id).get("provider_ref")

        ref = wait_until(adopted_ref, 10)
        assert str(ref).startswith(f"pid:{worker.pid}:")
        assert pid_alive(worker.pid)
    finally:
        worker.kill()
        worker.wait()


def test_record_whose_worker_is_gone_is_ended(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    session_id = new_session_id()
    created = time.time() - 600
    record = {
        "session_id": session_id,
        "dataset": DATASET,
        "user": None,
        "state": "running",
        "worker_id": "w-0000dead",
        "provider": "local",
        # A pid with a start time that no running process has.
        "provider_ref": "pid:1:999999999",
        "created_at": created,
        "updated_at": created,
        "ended_reason": None,
    }
    redis_client.hset("bellhop:sessions", session_id, json.dumps(record))

    orchestrator_factory(WORKER_HEARTBEAT_GRACE_S="600")

    wait_until(lambda: record_of(redis_client, session_id)["state"] == "ended", 10)
    ended = record_of(redis_client, session_id)
    assert ended["ended_reason"] == "the provider no longer runs the worker"
