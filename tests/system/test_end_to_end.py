"""A browser-like client, the gateway, the orchestrator and a worker, end to end."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import redis
from client import SessionClient
from flights_csv import matching_rows, value_counts
from support import pid_alive, wait_until

ACCEPTANCE_WHERE = {"carrier": ["UA", "DL"], "origin": ["JFK"], "month": [7]}


def filter_request(request_id: int, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "filter", "params": params}


def worker_pid(system: Any, session_id: str) -> int:
    response = httpx.get(f"{system.orchestrator_url}/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    client = redis.Redis.from_url(system.redis_url, decode_responses=True)
    heartbeat = wait_until(
        lambda: client.get(f"bellhop:session:{session_id}:worker"), 30
    )
    return int(json.loads(str(heartbeat))["pid"])


def test_filter_matches_csv_count(system: Any) -> None:
    client = SessionClient(system.gateway_url)
    try:
        client.wait_ready()
        response = client.rpc(filter_request(1, where=ACCEPTANCE_WHERE, limit=5))
    finally:
        client.close()

    expected = matching_rows(ACCEPTANCE_WHERE)
    result = response["result"]
    assert response["id"] == 1
    assert result["count"] == len(expected)
    assert result["count"] > 0
    assert result["facets"]["origin"] == {"JFK": len(expected), "EWR": 0, "LGA": 0}
    carriers = {k: v for k, v in result["facets"]["carrier"].items() if v}
    assert carriers == value_counts(expected, "carrier")
    assert len(result["ids"]) == 5


def test_session_events_reach_ready(system: Any) -> None:
    client = SessionClient(system.gateway_url)
    try:
        client.wait_ready()
        states = client.states()
    finally:
        client.close()
    assert states[0] == "provisioning"
    assert "starting" in states
    assert states.index("starting") < states.index("ready")
    assert len(client.session_id) >= 22


def test_requests_before_ready_answered_in_order(system: Any) -> None:
    client = SessionClient(system.gateway_url)
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()

    def record(response: Any) -> None:
        with lock:
            answers.append((response["id"], time.monotonic()))

    try:
        months = list(range(1, 7))
        for month in months:
            client.sio.emit(
                "rpc",
                filter_request(month, where={"month": [month]}, limit=1),
                callback=record,
            )
        ready_at = client.wait_ready()["received_at"]
        wait_until(lambda: len(answers) == len(months), 60)
    finally:
        client.close()

    assert [request_id for request_id, _ in answers] == months
    assert all(answered_at >= ready_at for _, answered_at in answers)


def test_disconnect_stops_worker_and_removes_keys(system: Any) -> None:
    client = SessionClient(system.gateway_url)
    client.wait_ready()
    session_id = client.session_id
    pid = worker_pid(system, session_id)
    assert pid_alive(pid)
    client.close()

    wait_until(lambda: not pid_alive(pid), 30)
    store = redis.Redis.from_url(system.redis_url, decode_responses=True)
    wait_until(lambda: not store.keys(f"bellhop:session:{session_id}:*"), 30)
    wait_until(lambda: not store.hexists("bellhop:sessions", session_id), 30)


def test_bad_requests_get_errors_and_worker_keeps_serving(system: Any) -> None:
    client = SessionClient(system.gateway_url)
    try:
        client.wait_ready()
        not_json = client.rpc("{this is not json")
        not_jsonrpc = client.rpc({"hello": "world"})
        unknown = client.rpc({"jsonrpc": "2.0", "id": 7, "method": "explode"})
        bad_params = client.rpc(filter_request(8, where={"carrier": "UA"}))
        unknown_field = client.rpc(filter_request(9, where={"airline": ["UA"]}))
        after = client.rpc({"jsonrpc": "2.0", "id": 10, "method": "ping"})
    finally:
        client.close()

    assert not_json["error"]["code"] == -32700
    assert not_json["id"] is None
    assert not_jsonrpc["error"]["code"] == -32600
    assert unknown["error"]["code"] == -32601
    assert unknown["id"] == 7
    assert "explode" in unknown["error"]["message"]
    assert bad_params["error"]["code"] == -32602
    assert bad_params["id"] == 8
    assert unknown_field["error"]["code"] == -32602
    assert "airline" in unknown_field["error"]["message"]
    assert "carrier" in unknown_field["error"]["message"]
    assert after["result"]["pong"] is True
    assert after["id"] == 10


def test_terminate_is_acknowledged_then_session_ends(system: Any) -> None:
    client = SessionClient(system.gateway_url)
    try:
        client.wait_ready()
        pid = worker_pid(system, client.session_id)
        response = client.rpc({"jsonrpc": "2.0", "id": 11, "method": "terminate"})
        ended = client.wait_for_event(lambda e: e.get("state") == "ended", 30)
    finally:
        client.close()

    assert response == {"jsonrpc": "2.0", "id": 11, "result": {"terminating": True}}
    assert ended["message"]
    wait_until(lambda: not pid_alive(pid), 30)


def test_deleted_session_reports_its_reason(system: Any) -> None:
    client = SessionClient(system.gateway_url)
    try:
        client.wait_ready()
        response = httpx.delete(
            f"{system.orchestrator_url}/v1/sessions/{client.session_id}",
            params={"reason": "closed by the operator"},
        )
        ended = client.wait_for_event(lambda e: e.get("state") == "ended", 30)
    finally:
        client.close()

    assert response.status_code == 200
    assert ended["message"] == "closed by the operator"
