"""The reaper: sessions end when their worker or client is gone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis
from bellhop_shared.keys import new_session_id
from orchestrator_support import (
    STANDIN_WORKER_COMMAND,
    OrchestratorFactory,
    heartbeat,
    ref_pid,
)
from support import pid_alive, wait_until

DATASET = "synthetic-1k"
HEARTBEAT_TTL_S = 3.0


def subscribe(redis_client: redis.Redis, session_id: str) -> Any:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"bellhop:session:{session_id}:results")
    return pubsub


def ended_notification(pubsub: Any) -> dict[str, Any] | None:
    message = pubsub.get_message(timeout=0.1)
    if message and message["type"] == "message":
        payload = json.loads(message["data"])
        if payload.get("method") == "session.ended":
            return dict(payload)
    return None


def stored_record(redis_client: redis.Redis, session_id: str) -> dict[str, Any]:
    raw = redis_client.hget("bellhop:sessions", session_id)
    return json.loads(raw) if raw else {}


def test_hung_worker_ends_session(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND,
        STANDIN_HEARTBEAT_FOR_S="2",
        WORKER_HEARTBEAT_TTL_S=f"{HEARTBEAT_TTL_S:g}",
    )
    session_id = new_session_id()
    record = orchestrator.create(dataset=DATASET, session_id=session_id).json()
    wait_until(
        lambda: stored_record(redis_client, session_id)["state"] == "running", 30
    )
    pubsub = subscribe(redis_client, session_id)

    def ended() -> bool:
        return stored_record(redis_client, session_id)["state"] == "ended"

    # The stand-in stops its heartbeat 2 s after its start but keeps running.
    # Its key expires one TTL later, and the reaper acts at its next tick.
    wait_until(ended, 2 + 2 * HEARTBEAT_TTL_S)
    final = stored_record(redis_client, session_id)
    assert (
        final["ended_reason"]
        == "the worker stopped sending heartbeats (it exited or hung)"
    )
    notification = wait_until(lambda: ended_notification(pubsub), 10, interval_s=0)
    assert notification == {
        "jsonrpc": "2.0",
        "method": "session.ended",
        "params": {
            "reason": "the worker stopped sending heartbeats (it exited or hung)",
            "state": "ended",
        },
    }
    # The reaper stops the hung worker, and the orchestrator reaps its child.
    pid = ref_pid(record)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 20)


def test_worker_without_heartbeat_times_out(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND,
        STANDIN_NO_HEARTBEAT="1",
        WORKER_START_TIMEOUT_S="2",
    )
    session_id = new_session_id()
    record = orchestrator.create(dataset=DATASET, session_id=session_id).json()

    wait_until(lambda: stored_record(redis_client, session_id)["state"] == "ended", 20)

    final = stored_record(redis_client, session_id)
    assert "no heartbeat within 2 s" in final["ended_reason"]
    wait_until(lambda: not pid_alive(ref_pid(record)), 10)


def test_client_gone_ends_session(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND, GATEWAY_GRACE_S="1"
    )
    session_id = new_session_id()
    client_key = f"bellhop:session:{session_id}:client"
    redis_client.set(client_key, json.dumps({"gateway_id": "g-1"}), px=1500)
    record = orchestrator.create(dataset=DATASET, session_id=session_id).json()
    pubsub = subscribe(redis_client, session_id)

    wait_until(lambda: stored_record(redis_client, session_id)["state"] == "ended", 20)

    final = stored_record(redis_client, session_id)
    assert "no client heartbeat for 1 s" in final["ended_reason"]
    # The record turns ended first; the notification, the stop and the
    # cleanup follow.
    notification = wait_until(lambda: ended_notification(pubsub), 10, interval_s=0)
    wait_until(lambda: not pid_alive(ref_pid(record)), 20)
    wait_until(lambda: redis_client.keys(f"bellhop:session:{session_id}:*") == [], 10)
    assert isinstance(notification, dict)
    assert "client heartbeat" in notification["params"]["reason"]


def test_live_client_keeps_session(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND, GATEWAY_GRACE_S="1"
    )
    session_id = new_session_id()
    client_key = f"bellhop:session:{session_id}:client"
    redis_client.set(client_key, "{}", ex=60)
    orchestrator.create(dataset=DATASET, session_id=session_id)
    wait_until(
        lambda: stored_record(redis_client, session_id)["state"] == "running", 20
    )

    # Several reaper intervals and grace periods pass with the client present.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert stored_record(redis_client, session_id)["state"] == "running"
        time.sleep(0.2)


def test_dataset_failure_marks_session_failed(
    orchestrator_factory: OrchestratorFactory,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing.csv"
    catalog = tmp_path / "catalog.json"
    entry = {"name": "broken", "kind": "csv", "path": str(missing)}
    catalog.write_text(json.dumps({"datasets": [entry]}))
    orchestrator = orchestrator_factory(BELLHOP_CATALOG=str(catalog))
    session_id = new_session_id()

    response = orchestrator.create(dataset="broken", session_id=session_id)

    assert response.status_code == 201
    wait_until(lambda: stored_record(redis_client, session_id)["state"] == "failed", 30)
    final = stored_record(redis_client, session_id)
    assert "missing.csv" in final["ended_reason"]
    beat = heartbeat(redis_client, session_id)
    assert beat is None or beat["state"] == "failed"


def test_stubborn_worker_is_killed(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND,
        STANDIN_IGNORE_SIGTERM="1",
        LOCAL_STOP_TIMEOUT_S="1",
    )
    session_id = new_session_id()
    record = orchestrator.create(dataset=DATASET, session_id=session_id).json()
    wait_until(lambda: heartbeat(redis_client, session_id), 20)

    response = orchestrator.request("DELETE", f"/v1/sessions/{session_id}")

    assert response.status_code == 200
    assert not pid_alive(ref_pid(record))
    log = orchestrator.process.log_text()
    assert "after SIGTERM; sending SIGKILL" in log


def test_time_to_live_ends_session(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND, WORKER_TIME_TO_LIVE_S="60"
    )
    session_id = new_session_id()
    record = orchestrator.create(dataset=DATASET, session_id=session_id).json()
    wait_until(
        lambda: stored_record(redis_client, session_id)["state"] == "running", 20
    )

    # Age the record past its time to live, as if it had run for two minutes.
    aged = {**stored_record(redis_client, session_id)}
    aged["created_at"] -= 120
    redis_client.hset("bellhop:sessions", session_id, json.dumps(aged))

    wait_until(lambda: stored_record(redis_client, session_id)["state"] == "ended", 20)
    final = stored_record(redis_client, session_id)
    assert final["ended_reason"] == "reached its time to live of 60 s"
    wait_until(lambda: not pid_alive(ref_pid(record)), 10)


def test_ended_records_are_purged(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND,
        STANDIN_NO_HEARTBEAT="1",
        WORKER_START_TIMEOUT_S="1",
        ENDED_RETENTION_S="1",
    )
    session_id = orchestrator.create(dataset=DATASET).json()["session_id"]

    wait_until(
        lambda: stored_record(redis_client, session_id).get("state") == "ended", 20
    )
    wait_until(lambda: not redis_client.hexists("bellhop:sessions", session_id), 20)


def test_one_replica_leads_the_reaper(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    first = orchestrator_factory("first", REAPER_INTERVAL_S="0.3")
    second = orchestrator_factory("second", REAPER_INTERVAL_S="0.3")
    lock_key = "bellhop:orchestrator:reaper-leader"
    owner = wait_until(lambda: redis_client.get(lock_key), 10)
    leader, follower = (
        (first, second) if f":{first.process.pid}:" in str(owner) else (second, first)
    )
    assert f":{leader.process.pid}:" in str(owner)

    leader.process.proc.kill()
    leader.process.proc.wait()

    def follower_leads() -> bool:
        return f":{follower.process.pid}:" in str(redis_client.get(lock_key))

    wait_until(follower_leads, 10)
    assert "reaper leadership taken" in follower.process.log_text()
