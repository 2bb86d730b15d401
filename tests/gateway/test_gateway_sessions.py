"""Session lifecycle events, orchestrator errors and missed notifications."""

from __future__ import annotations

import json
from typing import Any

import redis
from gateway_client import GatewayClient, run
from gateway_env import ORCHESTRATOR_TOKEN
from gateway_fakes import KEYS, FakeOrchestrator
from support import free_port, wait_until


def test_events_reach_ready(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[GatewayClient, dict[str, Any]]:
        client = await GatewayClient(gateway.url).connect()
        try:
            return client, await client.wait_ready()
        finally:
            await client.close()

    client, ready = run(scenario())

    states = client.states
    assert states[0] == "provisioning"
    assert states.index("starting") < states.index("loading") < states.index("ready")
    assert ready["progress"] == 1.0
    assert len(client.session_id) >= 43
    assert len(client.resume_token) >= 43
    assert {e["session_id"] for e in client.events} == {client.session_id}
    progress = [e["progress"] for e in client.events if e["state"] == "loading"]
    assert progress == sorted(progress)
    [post] = orchestrator.calls_for(client.session_id, "POST")
    assert post.body == {
        "dataset": "flights",
        "session_id": client.session_id,
        "user": None,
    }
    assert post.authorization == f"Bearer {ORCHESTRATOR_TOKEN}"


def test_dataset_defaults_to_flights(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> str:
        client = await GatewayClient(gateway.url).connect({})
        try:
            await client.wait_ready()
            return client.session_id
        finally:
            await client.close()

    session_id = run(scenario())

    [post] = orchestrator.calls_for(session_id, "POST")
    assert post.body["dataset"] == "flights"


def failed_session(url: str, dataset: str) -> tuple[dict[str, Any], bool, str]:
    async def scenario() -> tuple[dict[str, Any], bool, str]:
        client = await GatewayClient(url).connect({"dataset": dataset})
        try:
            event = await client.wait_state()
            await client.wait_for(lambda c: c.disconnected.is_set())
            return event, client.disconnected.is_set(), client.session_id
        finally:
            await client.close()

    result: tuple[dict[str, Any], bool, str] = run(scenario())
    return result


def test_unknown_dataset_fails_session(gateway: Any, redis_client: redis.Redis) -> None:
    event, disconnected, session_id = failed_session(gateway.url, "no-such-data")

    assert event["state"] == "failed"
    assert "no-such-data" in event["message"]
    assert "flights" in event["message"]
    assert disconnected
    wait_until(lambda: not redis_client.keys(f"{KEYS.session(session_id)}:*"), 10)


def test_orchestrator_over_limit_fails_session(
    gateway: Any, redis_client: redis.Redis
) -> None:
    event, disconnected, _ = failed_session(gateway.url, "busy")

    assert event["state"] == "failed"
    assert "retry in 7 s" in event["message"]
    assert disconnected


def test_worker_failure_reaches_client(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    event, disconnected, session_id = failed_session(gateway.url, "broken")

    assert event["state"] == "failed"
    assert event["message"] == "Dataset 'broken' is missing: no such file."
    assert disconnected
    wait_until(lambda: orchestrator.calls_for(session_id, "DELETE"), 10)


def test_missed_ready_read_from_heartbeat(
    gateway: Any, redis_client: redis.Redis
) -> None:
    async def scenario() -> GatewayClient:
        client = await GatewayClient(gateway.url).connect({"dataset": "stalled"})
        try:
            await client.wait_for(lambda c: "starting" in c.states)
            heartbeat = {
                "state": "ready",
                "progress": 1.0,
                "message": "",
                "worker_id": "w-1",
            }
            # Only the key: no notification is published, as if pub/sub dropped it.
            redis_client.set(
                KEYS.worker(client.session_id), json.dumps(heartbeat), ex=30
            )
            await client.wait_ready()
            return client
        finally:
            await client.close()

    client = run(scenario())

    ready = [e for e in client.events if e["state"] == "ready"]
    assert ready[0]["worker_id"] == "w-1"


def test_session_ended_by_orchestrator(gateway: Any, redis_client: redis.Redis) -> None:
    async def scenario() -> dict[str, Any]:
        client = await GatewayClient(gateway.url).connect()
        try:
            await client.wait_ready()
            note = {
                "jsonrpc": "2.0",
                "method": "session.ended",
                "params": {"reason": "idle"},
            }
            redis_client.publish(KEYS.results(client.session_id), json.dumps(note))
            ended = await client.wait_state_named("ended")
            await client.wait_for(lambda c: c.disconnected.is_set())
            return ended
        finally:
            await client.close()

    ended = run(scenario())

    assert ended["message"] == "idle"


def test_session_failed_by_orchestrator(
    gateway: Any, redis_client: redis.Redis
) -> None:
    async def scenario() -> dict[str, Any]:
        client = await GatewayClient(gateway.url).connect()
        try:
            await client.wait_ready()
            note = {
                "jsonrpc": "2.0",
                "method": "session.ended",
                "params": {"reason": "the worker crashed", "state": "failed"},
            }
            redis_client.publish(KEYS.results(client.session_id), json.dumps(note))
            failed = await client.wait_state_named("failed")
            await client.wait_for(lambda c: c.disconnected.is_set())
            return failed
        finally:
            await client.close()

    failed = run(scenario())

    assert failed["message"] == "the worker crashed"


def test_client_heartbeat_key_while_attached(
    gateway: Any, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[Any, Any, str]:
        client = await GatewayClient(gateway.url).connect()
        try:
            await client.wait_ready()
            key = KEYS.client(client.session_id)
            return redis_client.get(key), redis_client.ttl(key), client.session_id
        finally:
            await client.close()

    heartbeat, ttl_s, session_id = run(scenario())

    assert json.loads(heartbeat)["gateway_id"] == "g-one"
    assert 0 < ttl_s <= 15
    # Detached, the key covers the resume grace plus one heartbeat TTL, so
    # the orchestrator's reaper leaves a resumable session alone.
    detached = wait_until(
        lambda: "detached_at" in (redis_client.get(KEYS.client(session_id)) or ""), 10
    )
    assert detached
    detached_ttl_s = redis_client.ttl(KEYS.client(session_id))
    assert 15 < detached_ttl_s <= 5 + 15


def test_unreachable_orchestrator_fails_session(
    start_gateway: Any, redis_client: redis.Redis
) -> None:
    closed_port = free_port()
    stranded = start_gateway(
        "g-stranded", ORCHESTRATOR_URL=f"http://127.0.0.1:{closed_port}"
    )

    event, disconnected, _ = failed_session(stranded.url, "flights")

    assert event["state"] == "failed"
    assert "unreachable" in event["message"]
    assert disconnected
    assert "giving up after 4 attempts" in stranded.log_text()
