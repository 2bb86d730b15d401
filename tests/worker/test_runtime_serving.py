"""A real worker process on the flights data: ready, filter, and bad input.

One worker serves the whole module, since loading flights is the slow part;
each test pushes its own requests with ids of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from bellhop_shared.keys import new_session_id
from flights_csv import matching_rows
from support import ServiceProcess
from worker_process import (
    KEYS,
    Results,
    heartbeat,
    is_notification,
    push,
    rpc,
    start_worker,
)

WHERE: dict[str, Any] = {"carrier": ["UA", "DL"], "origin": ["JFK"], "month": [7]}


@dataclass
class Served:
    session_id: str
    worker: ServiceProcess
    results: Results
    client: redis.Redis


@pytest.fixture(scope="module")
def served(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    session_id = new_session_id()
    results = Results(redis_url, session_id)
    log_dir: Path = tmp_path_factory.mktemp("worker-serving")
    worker = start_worker(
        redis_url, log_dir, session_id, results=results, WORKER_ID="w-serving1"
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    results.wait_for_state("ready")
    yield Served(session_id, worker, results, client)
    worker.stop()
    results.close()
    client.close()


def ask(served: Served, *items: str | bytes, last_id: Any) -> list[Any]:
    """Push items, wait for the response to last_id, return the new responses."""
    return ask_until(served, items, lambda m: is_response_to(m, last_id))


def ask_until(
    served: Served, items: Sequence[str | bytes], until: Callable[[Any], bool]
) -> list[Any]:
    """Push items, wait for a message matching until, return the new responses."""
    seen = len(served.results.responses())
    push(served.client, served.session_id, *items)
    served.results.wait_for(until, 30)
    served.results.drain(0.2)
    return served.results.responses()[seen:]


def is_response_to(message: Any, request_id: Any) -> bool:
    return (
        isinstance(message, dict)
        and not is_notification(message)
        and message.get("id") == request_id
    )


def test_worker_reports_ready(served: Served) -> None:
    states = served.results.states()
    loading = [
        m["params"]["progress"]
        for m in served.results.messages
        if is_notification(m) and m["params"].get("state") == "loading"
    ]

    assert states[0] == "starting"
    assert states[-1] == "ready"
    assert "loading" in states
    assert loading == sorted(loading)
    assert all(0.0 <= progress <= 1.0 for progress in loading)
    ready = served.results.wait_for_state("ready")["params"]
    assert ready["progress"] == 1.0
    assert ready["worker_id"] == "w-serving1"


def test_worker_heartbeat_key_ready(served: Served) -> None:
    document = heartbeat(served.client, served.session_id)

    assert document is not None
    assert document["state"] == "ready"
    assert document["worker_id"] == "w-serving1"
    assert document["session_id"] == served.session_id
    assert document["dataset"] == "flights"
    assert document["pid"] == served.worker.pid
    assert document["updated_at"] >= document["started_at"]
    ttl_ms = served.client.pttl(KEYS.worker(served.session_id))
    assert 0 < ttl_ms <= 5000


def test_worker_filter_matches_csv(served: Served) -> None:
    expected = matching_rows(WHERE)

    [response] = ask(served, rpc("filter", "f-1", where=WHERE, limit=5), last_id="f-1")

    result = response["result"]
    assert result["count"] == len(expected)
    assert result["count"] > 0
    assert len(result["ids"]) == 5
    assert result["facets"]["origin"]["JFK"] == len(expected)


def test_worker_describe_counts_rows(served: Served) -> None:
    [response] = ask(served, rpc("describe", "d-1"), last_id="d-1")

    assert "result" in response, response
    assert json.dumps(response["result"]).count("336776") >= 1


def test_worker_answers_malformed_inputs(served: Served) -> None:
    items: list[str | bytes] = [
        "{this is not json",
        b"\xff\xfe\x00",
        json.dumps([1, 2]),
        json.dumps("just a string"),
        json.dumps({"jsonrpc": "1.0", "id": "m-1", "method": "ping"}),
        json.dumps({"jsonrpc": "2.0", "id": "m-2"}),
        rpc("explode", "m-3"),
        json.dumps({"jsonrpc": "2.0", "id": "m-4", "method": "filter", "params": [1]}),
        rpc("filter", "m-5", where={"carrier": "UA"}),
        json.dumps([]),
        json.dumps({"jsonrpc": "2.0", "method": "ping"}),
        json.dumps(
            [json.loads(rpc("ping", "m-6")), 5, {"jsonrpc": "2.0", "method": "ping"}]
        ),
        rpc("ping", "m-7"),
    ]

    responses = ask(served, *items, last_id="m-7")

    codes = [
        [r["error"]["code"] for r in response]
        if isinstance(response, list)
        else response.get("error", {}).get("code")
        for response in responses[:-2]
    ]
    assert codes == [
        -32700,
        -32700,
        [-32600, -32600],
        -32600,
        -32600,
        -32600,
        -32601,
        -32602,
        -32602,
        -32600,
    ]
    assert [r.get("id") for r in responses[4:8]] == ["m-1", "m-2", "m-3", "m-4"]
    mixed = responses[-2]
    assert [r["id"] for r in mixed] == ["m-6", None]
    assert mixed[0]["result"]["pong"] is True
    assert responses[-1]["result"]["pong"] is True


def test_worker_batch_request(served: Served) -> None:
    batch = json.dumps(
        [
            json.loads(rpc("filter", "b-1", where={"month": [1]}, limit=1)),
            json.loads(rpc("filter", "b-2", where={"month": [2]}, limit=1)),
        ]
    )

    [response] = ask_until(served, [batch], lambda m: isinstance(m, list))

    assert [r["id"] for r in response] == ["b-1", "b-2"]
    assert response[0]["result"]["count"] == len(matching_rows({"month": ["1"]}))
    assert response[1]["result"]["count"] == len(matching_rows({"month": ["2"]}))


def test_worker_ping_reports_counters(served: Served) -> None:
    [response] = ask(served, rpc("ping", "p-1"), last_id="p-1")

    result = response["result"]
    assert result["pong"] is True
    assert result["worker_id"] == "w-serving1"
    assert result["session_id"] == served.session_id
    assert result["requests"] >= 1
    assert result["uptime_s"] > 0


def test_worker_logs_lifecycle_and_requests(served: Served) -> None:
    marker = "marker-7f3a9c"
    ask(served, rpc("filter", "l-1", where={"dest": [marker]}), last_id="l-1")
    log = served.worker.log_text()

    assert f"worker w-serving1 started session={served.session_id}" in log
    assert "dataset=flights" in log
    assert "state=ready" in log
    assert "request handled method=filter took_ms=" in log
    assert marker not in log
