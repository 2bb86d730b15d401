"""The orchestrator's REST API, run as a process with real workers and Redis."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx
import pytest
import redis
from bellhop_shared.keys import new_session_id
from orchestrator_support import (
    STANDIN_WORKER_COMMAND,
    Orchestrator,
    OrchestratorFactory,
    heartbeat,
    local_worker_pids,
    ref_pid,
)
from support import pid_alive, wait_until

DATASET = "synthetic-1k"


def test_create_starts_worker(
    orchestrator: Orchestrator, redis_url: str, redis_client: redis.Redis
) -> None:
    session_id = new_session_id()
    response = orchestrator.create(dataset=DATASET, session_id=session_id, user="u1")

    assert response.status_code == 201, response.text
    record = response.json()
    assert record["session_id"] == session_id
    assert record["dataset"] == DATASET
    assert record["user"] == "u1"
    assert record["state"] == "starting"
    assert record["provider"] == "local"
    assert record["worker_id"].startswith("w-")
    assert record["provider_ref"].startswith("pid:")
    assert pid_alive(ref_pid(record))
    beat = wait_until(lambda: heartbeat(redis_client, session_id), 30)
    assert isinstance(beat, dict)
    assert beat["worker_id"] == record["worker_id"]
    assert beat["pid"] == ref_pid(record)
    running = wait_until(
        lambda: (orchestrator.record(session_id) or {}).get("state") == "running", 10
    )
    assert running


def test_dash_session_and_spaced_user_reach_worker(
    orchestrator: Orchestrator, redis_client: redis.Redis
) -> None:
    # Random ids may start with "-", and token subjects may contain spaces.
    session_id = "-" + new_session_id()[1:]
    response = orchestrator.create(
        dataset=DATASET, session_id=session_id, user="Jane Doe"
    )

    assert response.status_code == 201, response.text
    beat = wait_until(lambda: heartbeat(redis_client, session_id), 30)
    assert isinstance(beat, dict)
    assert beat["session_id"] == session_id


def test_create_without_session_id_generates_one(orchestrator: Orchestrator) -> None:
    response = orchestrator.create(dataset=DATASET)

    assert response.status_code == 201, response.text
    assert len(response.json()["session_id"]) >= 22


def test_concurrent_creates_start_one_worker(
    orchestrator_factory: OrchestratorFactory, redis_url: str
) -> None:
    orchestrator = orchestrator_factory(LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND)
    session_id = new_session_id()

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=orchestrator.url, timeout=60) as client:
            body = {"dataset": DATASET, "session_id": session_id}
            calls = [client.post("/v1/sessions", json=body) for _ in range(10)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(post_all())

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 9 + [201]
    worker_ids = {response.json()["worker_id"] for response in responses}
    assert len(worker_ids) == 1
    assert len(local_worker_pids(redis_url, session_id)) == 1


def test_create_again_returns_same_record(orchestrator: Orchestrator) -> None:
    session_id = new_session_id()
    first = orchestrator.create(dataset=DATASET, session_id=session_id)
    second = orchestrator.create(dataset=DATASET, session_id=session_id)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["worker_id"] == first.json()["worker_id"]


def test_create_with_other_dataset_conflicts(orchestrator: Orchestrator) -> None:
    session_id = new_session_id()
    orchestrator.create(dataset=DATASET, session_id=session_id)
    response = orchestrator.create(dataset="synthetic-2k", session_id=session_id)

    assert response.status_code == 409
    assert "another dataset" in response.json()["detail"]


def test_create_with_other_user_conflicts(orchestrator: Orchestrator) -> None:
    session_id = new_session_id()
    orchestrator.create(dataset=DATASET, session_id=session_id, user="alice")
    response = orchestrator.create(dataset=DATASET, session_id=session_id, user="bob")

    assert response.status_code == 409
    assert "another user" in response.json()["detail"]


def test_body_without_json_content_type_named(orchestrator: Orchestrator) -> None:
    response = httpx.post(
        f"{orchestrator.url}/v1/sessions",
        content=b'{"dataset": "synthetic-1k"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["detail"]
    assert "application/x-www-form-urlencoded" in response.json()["detail"]


def test_body_not_json_names_position(orchestrator: Orchestrator) -> None:
    response = httpx.post(
        f"{orchestrator.url}/v1/sessions",
        content=b'{"dataset": synthetic-1k}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body: the body is not valid JSON" in detail
    assert "at character 12" in detail


@pytest.mark.parametrize("user", ["alice\n", "a" * 129])
def test_invalid_user_rejected(orchestrator: Orchestrator, user: str) -> None:
    response = orchestrator.create(dataset=DATASET, user=user)

    assert response.status_code == 422
    assert "user must be 1 to 128 characters" in response.json()["detail"]


def test_empty_user_rule_in_words(orchestrator: Orchestrator) -> None:
    response = orchestrator.create(dataset=DATASET, user="")

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "user must be 1 to 128 characters" in detail
    assert "\\x00" not in detail


def test_unknown_dataset_lists_valid_names(orchestrator: Orchestrator) -> None:
    response = orchestrator.create(dataset="no-such-data")

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "no-such-data" in detail
    assert "flights" in detail
    assert "synthetic-1m" in detail


def test_invalid_session_id_is_rejected(orchestrator: Orchestrator) -> None:
    response = orchestrator.create(dataset=DATASET, session_id="short")

    assert response.status_code == 422
    body = response.json()
    assert "session_id" in body["detail"]
    assert body["errors"][0]["location"] == "body.session_id"


def test_list_and_get_sessions(orchestrator: Orchestrator) -> None:
    created = [orchestrator.create(dataset=DATASET).json() for _ in range(2)]

    listed = orchestrator.request("GET", "/v1/sessions")
    fetched = orchestrator.request("GET", f"/v1/sessions/{created[0]['session_id']}")

    assert listed.status_code == 200
    assert [r["session_id"] for r in listed.json()] == [
        r["session_id"] for r in created
    ]
    assert fetched.status_code == 200
    assert fetched.json()["worker_id"] == created[0]["worker_id"]


def test_get_unknown_session_is_404(orchestrator: Orchestrator) -> None:
    session_id = new_session_id()
    response = orchestrator.request("GET", f"/v1/sessions/{session_id}")

    assert response.status_code == 404
    assert session_id in response.json()["detail"]


def test_delete_stops_worker_and_cleans_up(
    orchestrator: Orchestrator, redis_client: redis.Redis
) -> None:
    session_id = new_session_id()
    record = orchestrator.create(dataset=DATASET, session_id=session_id).json()
    wait_until(lambda: heartbeat(redis_client, session_id), 30)
    redis_client.set(f"bellhop:session:{session_id}:client", "{}", ex=60)
    redis_client.lpush(f"bellhop:session:{session_id}:queue", "{}")
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"bellhop:session:{session_id}:results")

    response = orchestrator.request("DELETE", f"/v1/sessions/{session_id}")

    assert response.status_code == 200, response.text
    final = response.json()
    assert final["state"] == "ended"
    assert final["ended_reason"] == "deleted through the API"
    assert not pid_alive(ref_pid(record))
    assert redis_client.keys(f"bellhop:session:{session_id}:*") == []
    assert not redis_client.hexists("bellhop:sessions", session_id)
    ended = _next_notification(pubsub, "session.ended")
    assert ended["params"] == {"reason": "deleted through the API", "state": "ended"}


def test_delete_passes_reason(orchestrator: Orchestrator) -> None:
    session_id = orchestrator.create(dataset=DATASET).json()["session_id"]
    response = orchestrator.request(
        "DELETE", f"/v1/sessions/{session_id}", params={"reason": "client left"}
    )

    assert response.status_code == 200
    assert response.json()["ended_reason"] == "client left"


def test_delete_unknown_session_is_404(orchestrator: Orchestrator) -> None:
    response = orchestrator.request("DELETE", f"/v1/sessions/{new_session_id()}")

    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


def test_token_required_when_configured(
    orchestrator_factory: OrchestratorFactory,
) -> None:
    orchestrator = orchestrator_factory(ORCHESTRATOR_TOKEN="s3cret-token-for-tests")
    url = f"{orchestrator.url}/v1/sessions"

    missing = httpx.get(url)
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    basic = httpx.get(url, headers={"Authorization": "Basic czNjcmV0"})
    right = orchestrator.request("GET", "/v1/sessions")
    health = httpx.get(f"{orchestrator.url}/healthz")

    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "bearer token" in response.json()["detail"]
    assert right.status_code == 200
    assert health.status_code == 200
    assert "s3cret-token-for-tests" not in orchestrator.process.log_text()


def test_max_workers_gives_503_with_retry_after(
    orchestrator_factory: OrchestratorFactory,
) -> None:
    orchestrator = orchestrator_factory(
        MAX_WORKERS="2",
        LIMIT_RETRY_AFTER_S="7",
        LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND,
    )
    first = orchestrator.create(dataset=DATASET)
    second = orchestrator.create(dataset=DATASET)
    over_limit = orchestrator.create(dataset=DATASET)

    assert first.status_code == 201
    assert second.status_code == 201
    assert over_limit.status_code == 503
    assert over_limit.headers["Retry-After"] == "7"
    assert "MAX_WORKERS" in over_limit.json()["detail"]
    deleted = orchestrator.request(
        "DELETE", f"/v1/sessions/{first.json()['session_id']}"
    )
    assert deleted.status_code == 200
    assert orchestrator.create(dataset=DATASET).status_code == 201


def test_max_workers_per_user(orchestrator_factory: OrchestratorFactory) -> None:
    orchestrator = orchestrator_factory(
        MAX_WORKERS_PER_USER="1", LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND
    )
    alice = orchestrator.create(dataset=DATASET, user="alice")
    alice_again = orchestrator.create(dataset=DATASET, user="alice")
    bob = orchestrator.create(dataset=DATASET, user="bob")

    assert alice.status_code == 201
    assert alice_again.status_code == 503
    assert "alice" in alice_again.json()["detail"]
    assert "Retry-After" in alice_again.headers
    assert bob.status_code == 201


def test_limit_holds_under_concurrent_creates(
    orchestrator_factory: OrchestratorFactory, redis_url: str
) -> None:
    orchestrator = orchestrator_factory(
        MAX_WORKERS="3", LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND
    )

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(base_url=orchestrator.url, timeout=60) as client:
            calls = [
                client.post("/v1/sessions", json={"dataset": DATASET}) for _ in range(8)
            ]
            return [response.status_code for response in await asyncio.gather(*calls)]

    statuses = asyncio.run(post_all())

    assert statuses.count(201) == 3
    assert statuses.count(503) == 5
    assert len(local_worker_pids(redis_url)) == 3


def test_readyz_reports_redis(
    orchestrator: Orchestrator, orchestrator_factory: OrchestratorFactory
) -> None:
    ready = httpx.get(f"{orchestrator.url}/readyz")
    dead_redis = "redis://:hunter2@127.0.0.1:1/0"
    broken = orchestrator_factory("broken", REDIS_URL=dead_redis)
    not_ready = httpx.get(f"{broken.url}/readyz", timeout=30)

    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert not_ready.status_code == 503
    detail = not_ready.json()["detail"]
    assert "unreachable" in detail
    assert "hunter2" not in detail
    assert "hunter2" not in broken.process.log_text()


def test_metrics_count_sessions_and_workers(
    orchestrator_factory: OrchestratorFactory,
) -> None:
    orchestrator = orchestrator_factory(LOCAL_WORKER_COMMAND=STANDIN_WORKER_COMMAND)
    session_id = orchestrator.create(dataset=DATASET).json()["session_id"]
    orchestrator.create(dataset=DATASET)
    orchestrator.request("DELETE", f"/v1/sessions/{session_id}")

    response = httpx.get(f"{orchestrator.url}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples["bellhop_orchestrator_active_sessions"] == 1.0
    assert (
        samples['bellhop_orchestrator_workers_started_total{provider="local"}'] == 2.0
    )
    assert (
        samples['bellhop_orchestrator_workers_stopped_total{reason="deleted"}'] == 1.0
    )
    count = 'bellhop_orchestrator_spawn_duration_seconds_count{provider="local"}'
    assert samples[count] == 2.0
    assert "bellhop_orchestrator_provider_api_errors_total" in response.text


def test_openapi_schema_describes_routes(orchestrator: Orchestrator) -> None:
    schema = httpx.get(f"{orchestrator.url}/openapi.json").json()

    post = schema["paths"]["/v1/sessions"]["post"]
    assert set(post["responses"]) >= {"200", "201", "401", "409", "422", "503"}
    record = schema["components"]["schemas"]["SessionRecord"]
    assert set(record["properties"]) == {
        "session_id",
        "dataset",
        "user",
        "state",
        "worker_id",
        "provider",
        "provider_ref",
        "created_at",
        "updated_at",
        "ended_reason",
    }


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _next_notification(pubsub: Any, method: str) -> dict[str, Any]:
    def receive() -> dict[str, Any] | None:
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            payload = json.loads(message["data"])
            if payload.get("method") == method:
                return payload
        return None

    found = wait_until(receive, 10, interval_s=0)
    assert isinstance(found, dict)
    return found


def test_oversized_synthetic_dataset_states_the_limit(
    orchestrator: Orchestrator,
) -> None:
    response = orchestrator.create(dataset="synthetic-99m")

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "synthetic-99m" in detail
    assert "20,000,000" in detail


def process_nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return int(fields[16])  # field 19 of the line; fields[0] is field 3


def autogroup_nice(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/autogroup") as autogroup:
            return int(autogroup.read().split()[-1])
    except FileNotFoundError:
        return None


def test_local_workers_run_at_lower_priority(
    orchestrator_factory: OrchestratorFactory,
) -> None:
    orchestrator = orchestrator_factory("nice", LOCAL_WORKER_NICE="7")
    response = orchestrator.create(dataset=DATASET)
    assert response.status_code == 201, response.text
    pid = ref_pid(response.json())

    assert wait_until(lambda: process_nice(pid) == 7, 10)
    assert wait_until(lambda: autogroup_nice(pid) in (None, 7), 10)
    assert process_nice(os.getpid()) < 7


def test_worker_nice_out_of_range_is_refused(
    orchestrator_factory: OrchestratorFactory,
) -> None:
    with pytest.raises(AssertionError, match="LOCAL_WORKER_NICE"):
        orchestrator_factory("nice-bad", LOCAL_WORKER_NICE="25")
