"""A worker that exits while its session is live ends the session at once.

The heartbeat TTL and grace are 30 s each here, so only the provider's exit
check can end a session within EXIT_NOTICE_S.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from bellhop_orchestrator.models import RecordState, SessionRecord
from bellhop_orchestrator.providers.base import WorkerExit
from bellhop_orchestrator.reaper import UNCERTAIN_EXIT_MIN_AGE_S, explain_exit
from bellhop_shared.keys import new_session_id
from heroku_support import heroku_env, start_fake_heroku
from orchestrator_support import Orchestrator, OrchestratorFactory, ref_pid
from prometheus_client.parser import text_string_to_metric_families
from support import wait_until

DATASET = "synthetic-1k"
SLOW_HEARTBEAT = {"WORKER_HEARTBEAT_TTL_S": "30", "WORKER_HEARTBEAT_GRACE_S": "30"}
# The reaper ticks every 0.5 s in these tests; the rest is slack for a
# loaded machine.
EXIT_NOTICE_S = 5.0
CRASH_REASON = "the worker stopped unexpectedly (killed by SIGKILL)"
CLEAN_REASON = "the worker exited by itself (exit status 0)"


def stored_record(redis_client: redis.Redis, session_id: str) -> dict[str, Any]:
    raw = redis_client.hget("bellhop:sessions", session_id)
    return json.loads(raw) if raw else {}


def state_of(redis_client: redis.Redis, session_id: str) -> str | None:
    return stored_record(redis_client, session_id).get("state")


def subscribe(redis_client: redis.Redis, session_id: str) -> Any:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"bellhop:session:{session_id}:results")
    return pubsub


def next_ended_notification(pubsub: Any) -> dict[str, Any]:
    def receive() -> dict[str, Any] | None:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            payload = json.loads(message["data"])
            if payload.get("method") == "session.ended":
                return dict(payload)
        return None

    found = wait_until(receive, 10, interval_s=0)
    assert isinstance(found, dict)
    return found


def stopped_by_reason(orchestrator: Orchestrator) -> dict[str, float]:
    """Return the workers_stopped counter of the orchestrator, by reason."""
    text = httpx.get(f"{orchestrator.url}/metrics", timeout=10).text
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name != "bellhop_orchestrator_workers_stopped":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["reason"]] = sample.value
    return counts


def start_running_session(
    orchestrator: Orchestrator, redis_client: redis.Redis
) -> tuple[str, int]:
    """Create a session and wait until it runs; return its id and worker pid."""
    session_id = new_session_id()
    response = orchestrator.create(dataset=DATASET, session_id=session_id)
    assert response.status_code == 201, response.text
    wait_until(lambda: state_of(redis_client, session_id) == "running", 30)
    return session_id, ref_pid(response.json())


def test_killed_worker_fails_session_at_once(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(**SLOW_HEARTBEAT)
    session_id, pid = start_running_session(orchestrator, redis_client)
    pubsub = subscribe(redis_client, session_id)

    os.kill(pid, signal.SIGKILL)

    wait_until(lambda: state_of(redis_client, session_id) == "failed", EXIT_NOTICE_S)
    final = stored_record(redis_client, session_id)
    assert final["ended_reason"] == CRASH_REASON
    notification = next_ended_notification(pubsub)
    assert notification["params"] == {"reason": CRASH_REASON, "state": "failed"}
    assert stopped_by_reason(orchestrator) == {"worker_crashed": 1.0}
    assert f"worker pid={pid} exited exit_code=-9" in orchestrator.process.log_text()
    # The orchestrator reaped its child: no zombie is left behind.
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10)


def test_crash_of_adopted_worker_uses_heartbeat(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    first = orchestrator_factory("first", **SLOW_HEARTBEAT)
    session_id, pid = start_running_session(first, redis_client)
    # The worker outlives its orchestrator, so the next one is not its
    # parent and cannot read its exit status.
    first.stop()
    second = orchestrator_factory("second", **SLOW_HEARTBEAT)

    os.kill(pid, signal.SIGKILL)

    wait_until(lambda: state_of(redis_client, session_id) == "failed", EXIT_NOTICE_S)
    final = stored_record(redis_client, session_id)
    expected = "the worker stopped unexpectedly (exit status unknown)"
    assert final["ended_reason"] == expected
    assert stopped_by_reason(second) == {"worker_crashed": 1.0}


@pytest.mark.parametrize("exit_cause", ["terminate", "sigterm", "idle"])
def test_clean_exit_is_not_a_crash(
    exit_cause: str,
    orchestrator_factory: OrchestratorFactory,
    redis_client: redis.Redis,
) -> None:
    idle_timeout_s = "1" if exit_cause == "idle" else "600"
    orchestrator = orchestrator_factory(
        **SLOW_HEARTBEAT, WORKER_IDLE_TIMEOUT_S=idle_timeout_s
    )
    session_id = new_session_id()
    pubsub = subscribe(redis_client, session_id)
    response = orchestrator.create(dataset=DATASET, session_id=session_id)
    assert response.status_code == 201, response.text
    pid = ref_pid(response.json())

    if exit_cause != "idle":
        wait_until(lambda: state_of(redis_client, session_id) == "running", 30)
    if exit_cause == "terminate":
        request = {"jsonrpc": "2.0", "id": 1, "method": "terminate"}
        redis_client.lpush(f"bellhop:session:{session_id}:queue", json.dumps(request))
    elif exit_cause == "sigterm":
        os.kill(pid, signal.SIGTERM)

    wait_until(lambda: state_of(redis_client, session_id) == "ended", 30)
    final = stored_record(redis_client, session_id)
    assert final["ended_reason"] == CLEAN_REASON
    notification = next_ended_notification(pubsub)
    assert notification["params"] == {"reason": CLEAN_REASON, "state": "ended"}
    assert stopped_by_reason(orchestrator) == {"worker_exited": 1.0}


def test_deleted_session_is_not_an_exit(
    orchestrator_factory: OrchestratorFactory, redis_client: redis.Redis
) -> None:
    orchestrator = orchestrator_factory(**SLOW_HEARTBEAT)
    session_id, pid = start_running_session(orchestrator, redis_client)

    response = orchestrator.request("DELETE", f"/v1/sessions/{session_id}")

    assert response.status_code == 200
    assert not Path(f"/proc/{pid}").exists()
    # Several reaper ticks pass after the stopped worker's exit.
    time.sleep(2)
    assert stopped_by_reason(orchestrator) == {"deleted": 1.0}
    assert "reason=worker_" not in orchestrator.process.log_text()


def test_heroku_killed_dyno_fails_session(
    orchestrator_factory: OrchestratorFactory,
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    fake = start_fake_heroku(redis_url, tmp_path, sleep_workers=False)
    try:
        orchestrator = orchestrator_factory(**heroku_env(fake), **SLOW_HEARTBEAT)
        session_id = new_session_id()
        response = orchestrator.create(dataset=DATASET, session_id=session_id)
        assert response.status_code == 201, response.text
        wait_until(lambda: state_of(redis_client, session_id) == "running", 30)
        pubsub = subscribe(redis_client, session_id)
        (dyno,) = fake.dynos()

        os.killpg(dyno["pid"], signal.SIGKILL)
        # A dyno missing from the API counts as gone only for a session at
        # least UNCERTAIN_EXIT_MIN_AGE_S old: the list may lag behind a create.
        time.sleep(EXIT_NOTICE_S)
        early_state = state_of(redis_client, session_id)

        wait_until(
            lambda: state_of(redis_client, session_id) == "failed",
            UNCERTAIN_EXIT_MIN_AGE_S + EXIT_NOTICE_S,
        )
        final = stored_record(redis_client, session_id)
        expected = "the worker stopped unexpectedly (the dyno is gone)"
        assert early_state == "running"
        assert final["ended_reason"] == expected
        notification = next_ended_notification(pubsub)
        assert notification["params"] == {"reason": expected, "state": "failed"}
        assert stopped_by_reason(orchestrator) == {"worker_crashed": 1.0}
    finally:
        fake.process.stop()


def record_in(state: RecordState) -> SessionRecord:
    return SessionRecord(
        session_id=new_session_id(),
        dataset=DATASET,
        state=state,
        worker_id="w-00000000",
        provider="local",
        provider_ref="pid:1:1",
        created_at=time.time(),
        updated_at=time.time(),
    )


RUNNING, STARTING = RecordState.RUNNING, RecordState.STARTING


@pytest.mark.parametrize(
    ("record_state", "exit_code", "heartbeat_state", "code", "message"),
    [
        (RUNNING, 0, None, "worker_exited", CLEAN_REASON),
        (STARTING, 0, None, "worker_exited", CLEAN_REASON),
        (RUNNING, -9, "ready", "worker_crashed", CRASH_REASON),
        (
            RUNNING,
            1,
            None,
            "worker_crashed",
            "the worker stopped unexpectedly (exit status 1)",
        ),
        (
            RUNNING,
            None,
            None,
            "worker_exited",
            "the worker exited by itself (exit status unknown)",
        ),
        (
            RUNNING,
            None,
            "terminating",
            "worker_exited",
            "the worker exited by itself (exit status unknown)",
        ),
        (
            RUNNING,
            None,
            "ready",
            "worker_crashed",
            "the worker stopped unexpectedly (exit status unknown)",
        ),
        (
            STARTING,
            None,
            None,
            "worker_crashed",
            "the worker stopped unexpectedly (exit status unknown)",
        ),
    ],
)
def test_explain_exit_tells_clean_from_crash(
    record_state: RecordState,
    exit_code: int | None,
    heartbeat_state: str | None,
    code: str,
    message: str,
) -> None:
    heartbeat = None if heartbeat_state is None else {"state": heartbeat_state}

    reason, final_state = explain_exit(
        record_in(record_state), heartbeat, WorkerExit(exit_code)
    )

    assert reason.code == code
    assert reason.message == message
    clean = code == "worker_exited"
    assert final_state is (RecordState.ENDED if clean else RecordState.FAILED)
