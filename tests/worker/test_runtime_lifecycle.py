"""Worker process lifecycle: ordering before ready, exits, signals and crashes.

Each test starts its own `bellhop-worker` process on a fresh session id, with
the real engine and the real flights data unless the test is about a dataset
that cannot load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bellhop_shared.keys import new_session_id
from flights_csv import matching_rows
from support import (
    find_redis_server,
    free_port,
    wait_for_port,
    wait_until,
)
from worker_process import (
    KEYS,
    Results,
    heartbeat,
    push,
    rpc,
    start_worker,
    wait_exit,
)


@pytest.fixture
def session_id() -> str:
    return new_session_id()


@pytest.fixture
def results(redis_url: str, session_id: str) -> Iterator[Results]:
    subscription = Results(redis_url, session_id)
    yield subscription
    subscription.close()


def month_filter(month: int) -> str:
    return rpc("filter", f"month-{month}", where={"month": [month]}, limit=1)


def slow_compute(request_id: str) -> str:
    """Return a compute request that takes the worker about 0.2 s on flights."""
    return rpc(
        "compute",
        request_id,
        where={"origin": ["JFK", "EWR"]},
        group_by="dest",
        metrics=[
            {"op": "median", "field": "dep_delay"},
            {"op": "percentile", "field": "arr_delay", "q": 0.9},
        ],
    )


def test_requests_before_ready_answered_in_order(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    months = list(range(1, 8))
    worker = start_worker(redis_url, tmp_path, session_id, results=results)
    try:
        push(redis_client, session_id, *[month_filter(m) for m in months])
        results.wait_for_response("month-7", 120)
    finally:
        worker.stop()

    ids = [m.get("id") for m in results.responses()]
    assert ids == [f"month-{m}" for m in months]
    messages = results.messages
    ready_at = messages.index(results.wait_for_state("ready", 0))
    first_answer = min(messages.index(r) for r in results.responses())
    assert ready_at < first_answer
    first = results.wait_for_response("month-1", 0)
    assert first["result"]["count"] == len(matching_rows({"month": ["1"]}))


def test_terminate_exits_zero_and_deletes_heartbeat(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # URL-safe ids may start with "-"; the command line must still take them.
    session_id = "-" + new_session_id()[1:]
    results = Results(redis_url, session_id)
    worker = start_worker(redis_url, tmp_path, session_id, results=results)
    results.wait_for_state("ready")
    assert heartbeat(redis_client, session_id) is not None

    # One LPUSH puts both in one batch, so the ping after terminate gets a response.
    redis_client.lpush(
        KEYS.queue(session_id), rpc("terminate", "t-1"), rpc("ping", "t-2")
    )
    exit_code = wait_exit(worker, 30)
    results.wait_for_state("terminating", 10)
    worker.stop()

    assert exit_code == 0, worker.log_text()
    terminated = results.wait_for_response("t-1", 0)
    assert terminated["result"] == {"terminating": True}
    assert results.wait_for_response("t-2", 0)["result"]["pong"] is True
    terminating = results.wait_for_state("terminating", 0)["params"]
    assert terminating["message"] == "terminate requested"
    assert redis_client.exists(KEYS.worker(session_id)) == 0
    assert redis_client.llen(KEYS.inflight(session_id)) == 0
    assert "exited exit_code=0 reason=terminate requested" in worker.log_text()
    results.close()


def test_sigterm_idle_worker_exits_quickly(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    worker = start_worker(redis_url, tmp_path, session_id, results=results)
    results.wait_for_state("ready")

    sent_at = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    exit_code = wait_exit(worker, 30)
    took_s = time.monotonic() - sent_at
    results.wait_for_state("terminating", 10)
    worker.stop()

    assert exit_code == 0, worker.log_text()
    assert took_s < 5.0
    assert results.wait_for_state("terminating", 0)["params"]["message"] == "SIGTERM"
    assert redis_client.exists(KEYS.worker(session_id)) == 0


def test_sigterm_ends_long_blocking_wait(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    # With a 25 s block timeout, only an interrupted BLMOVE exits this fast.
    worker = start_worker(
        redis_url, tmp_path, session_id, results=results, WORKER_BLOCK_TIMEOUT_S="25"
    )
    results.wait_for_state("ready")
    push(redis_client, session_id, month_filter(1))
    results.wait_for_response("month-1", 60)
    wait_until(lambda: blocked_clients(redis_client) >= 1, 10)

    sent_at = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    exit_code = wait_exit(worker, 30)
    took_s = time.monotonic() - sent_at
    results.wait_for_state("terminating", 10)
    worker.stop()

    assert exit_code == 0, worker.log_text()
    assert took_s < 10.0
    assert results.wait_for_state("terminating", 0)["params"]["message"] == "SIGTERM"
    assert redis_client.exists(KEYS.worker(session_id)) == 0
    assert "Traceback" not in worker.log_text()


def blocked_clients(client: redis.Redis) -> int:
    return int(client.info("clients")["blocked_clients"])


def test_sigterm_busy_worker_parks_the_rest(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    request_ids = [f"h-{i}" for i in range(12)]
    worker = start_worker(redis_url, tmp_path, session_id, results=results)
    push(redis_client, session_id, *[slow_compute(i) for i in request_ids])
    results.wait_for_response("h-0", 120)

    # Heroku may deliver SIGTERM more than once; the repeats must not turn
    # the graceful stop into a kill that skips publishing.
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.send_signal(signal.SIGTERM)
    exit_code = wait_exit(worker, 30)
    worker.stop()

    assert exit_code == 0, worker.log_text()
    results.drain(0.3)
    answered = [m["id"] for m in results.responses()]
    parked = [
        json.loads(item)["id"]
        for item in reversed(redis_client.lrange(KEYS.inflight(session_id), 0, -1))
    ]
    assert answered + parked == request_ids
    assert all("result" in m for m in results.responses())
    assert redis_client.llen(KEYS.queue(session_id)) == 0
    assert "exited exit_code=0 reason=SIGTERM" in worker.log_text()


def test_idle_worker_exits(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    worker = start_worker(
        redis_url, tmp_path, session_id, results=results, WORKER_IDLE_TIMEOUT_S="1"
    )

    exit_code = wait_exit(worker, 120)
    results.wait_for_state("terminating", 10)
    worker.stop()

    assert exit_code == 0, worker.log_text()
    message = results.wait_for_state("terminating", 0)["params"]["message"]
    assert message.startswith("idle for ")
    assert redis_client.exists(KEYS.worker(session_id)) == 0
    assert "idle_s=" in worker.log_text()


def test_idle_worker_waits_for_client_heartbeat(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    worker = start_worker(
        redis_url, tmp_path, session_id, results=results, WORKER_IDLE_TIMEOUT_S="0.5"
    )
    results.wait_for_state("ready")
    client_ttl_s = 3.0
    redis_client.set(KEYS.client(session_id), "{}", px=int(client_ttl_s * 1000))
    key_set_at = time.monotonic()

    exit_code = wait_exit(worker, 60)
    lived_s = time.monotonic() - key_set_at
    worker.stop()

    assert exit_code == 0, worker.log_text()
    # The worker may only leave once the client heartbeat key has expired.
    assert lived_s >= client_ttl_s - 0.2


def test_unknown_dataset_fails_with_names(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    worker = start_worker(
        redis_url, tmp_path, session_id, results=results, dataset="no-such-data"
    )

    exit_code = wait_exit(worker, 60)
    failed = results.wait_for_state("failed", 10)["params"]
    worker.stop()

    assert exit_code == 2, worker.log_text()
    assert "no-such-data" in failed["message"]
    assert "flights" in failed["message"]
    document = heartbeat(redis_client, session_id)
    assert document is not None
    assert document["state"] == "failed"
    assert document["message"] == failed["message"]


def test_missing_file_fails_with_path(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    missing = tmp_path / "gone.csv"
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {"datasets": [{"name": "gone", "kind": "csv", "path": str(missing)}]}
        )
    )
    worker = start_worker(
        redis_url,
        tmp_path,
        session_id,
        dataset="gone",
        results=results,
        BELLHOP_CATALOG=str(catalog),
    )

    exit_code = wait_exit(worker, 60)
    failed = results.wait_for_state("failed", 10)["params"]
    worker.stop()

    assert exit_code == 2, worker.log_text()
    assert "gone.csv" in failed["message"]
    document = heartbeat(redis_client, session_id)
    assert document is not None
    assert document["state"] == "failed"
    assert "dataset failed" in worker.log_text()


def test_parked_batch_answered_first(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    # A crashed worker leaves its batch in inflight, newest at the left.
    for month in (1, 2, 3):
        redis_client.lpush(KEYS.inflight(session_id), month_filter(month))
    push(redis_client, session_id, month_filter(4))
    worker = start_worker(redis_url, tmp_path, session_id, results=results)

    results.wait_for_response("month-4", 120)
    worker.stop()

    ids = [m["id"] for m in results.responses()]
    assert ids == ["month-1", "month-2", "month-3", "month-4"]
    assert redis_client.llen(KEYS.inflight(session_id)) == 0


def test_sigkilled_batch_answered_by_next_worker(
    redis_url: str,
    redis_client: redis.Redis,
    session_id: str,
    results: Results,
    tmp_path: Path,
) -> None:
    request_ids = [f"k-{i}" for i in range(12)]
    first = start_worker(redis_url, tmp_path, session_id, name="first")
    push(redis_client, session_id, *[slow_compute(i) for i in request_ids])
    # Kill the worker as soon as its batch is in inflight.
    wait_until(lambda: redis_client.llen(KEYS.inflight(session_id)) > 0, 120, 0.005)
    os.kill(first.pid, signal.SIGKILL)
    first.stop()
    parked = redis_client.llen(KEYS.inflight(session_id))

    second = start_worker(
        redis_url, tmp_path, session_id, results=results, name="second"
    )
    results.wait_for_response("k-11", 120)
    second.stop()

    assert parked > 0
    answered = {m["id"] for m in results.responses()}
    assert answered == set(request_ids)
    assert all("result" in m for m in results.responses())
    assert redis_client.llen(KEYS.inflight(session_id)) == 0


def test_unreachable_redis_gives_up(tmp_path: Path) -> None:
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    worker = start_worker(
        dead_url, tmp_path, new_session_id(), WORKER_REDIS_GIVE_UP_S="2"
    )

    exit_code = wait_exit(worker, 60)
    worker.stop()

    log = worker.log_text()
    assert exit_code == 1, log
    assert "retrying in" in log
    assert "giving up" in log


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = find_redis_server()
    # The redis_url fixture has already skipped or failed without a binary.
    assert binary is not None
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen(
        [*argv, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return server


def test_worker_survives_redis_restart(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    session_id = new_session_id()
    server = start_redis(port, tmp_path)
    results = Results(url, session_id)
    worker = start_worker(url, tmp_path, session_id, results=results)
    try:
        results.wait_for_state("ready")
        results.close()
        server.terminate()
        server.wait(10)
        # Keep Redis down until the worker's own retry loop has noticed.
        wait_until(lambda: "retrying in" in worker.log_text(), 60)
        server = start_redis(port, tmp_path)

        results = Results(url, session_id)
        client = redis.Redis.from_url(url, decode_responses=True)
        push(client, session_id, rpc("ping", "after-restart"))
        response = results.wait_for_response("after-restart", 60)
        alive = worker.proc.poll() is None
        client.close()
    finally:
        worker.stop()
        results.close()
        server.terminate()
        server.wait(10)

    assert response["result"]["pong"] is True
    assert alive
