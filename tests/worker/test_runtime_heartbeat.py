"""The heartbeat thread and the load-progress callback, in process."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from bellhop_shared.keys import Keys, new_session_id
from bellhop_shared.states import WorkerState
from bellhop_worker.heartbeat import Heartbeat
from bellhop_worker.progress import LoadCancelled, ProgressPublisher
from bellhop_worker.queue import connect_raw
from bellhop_worker.status import WorkerStatus
from support import wait_until

KEYS = Keys()


def read_heartbeat(client: redis.Redis, session_id: str) -> dict[str, Any] | None:
    document = client.get(KEYS.worker(session_id))
    return None if document is None else json.loads(document)


def test_heartbeat_outlives_busy_main_thread(
    redis_url: str, redis_client: redis.Redis
) -> None:
    session_id = new_session_id()
    status = WorkerStatus("w-beat0001", session_id, "flights")
    status.set_state(WorkerState.READY, 1.0, "")
    raw = connect_raw(redis_url)
    beat = Heartbeat(raw, KEYS.worker(session_id), status, 0.1, 1.0)
    beat.write()
    first = read_heartbeat(redis_client, session_id)
    beat.start()
    try:
        # The main thread is busy (here: asleep) for more than two TTLs.
        time.sleep(2.5)
        alive = redis_client.exists(KEYS.worker(session_id))
        status.count_request()
        wait_until(lambda: has_requests(redis_client, session_id, 1), 5)
        later = read_heartbeat(redis_client, session_id)
    finally:
        beat.stop()
        raw.close()

    assert alive == 1
    assert first is not None
    assert later is not None
    assert later["updated_at"] > first["updated_at"]
    assert later["state"] == "ready"
    assert later["worker_id"] == "w-beat0001"


def has_requests(client: redis.Redis, session_id: str, count: int) -> bool:
    document = read_heartbeat(client, session_id)
    return document is not None and document["requests"] == count


def test_heartbeat_stop_then_delete(redis_url: str, redis_client: redis.Redis) -> None:
    session_id = new_session_id()
    status = WorkerStatus("w-beat0002", session_id, "flights")
    raw = connect_raw(redis_url)
    beat = Heartbeat(raw, KEYS.worker(session_id), status, 0.05, 5.0)
    beat.start()
    wait_until(lambda: redis_client.exists(KEYS.worker(session_id)), 5)

    beat.stop()
    beat.delete()
    raw.close()

    assert redis_client.exists(KEYS.worker(session_id)) == 0
    ttl_ms = redis_client.pttl(KEYS.worker(session_id))
    assert ttl_ms == -2


def test_progress_publishes_each_tenth() -> None:
    published: list[float] = []
    progress = ProgressPublisher(published.append, lambda: False, min_interval_s=60)

    for step in range(101):
        progress(step / 100)

    assert published == pytest.approx([i / 10 for i in range(1, 11)])


def test_progress_publishes_small_steps_after_interval() -> None:
    published: list[float] = []
    progress = ProgressPublisher(published.append, lambda: False, min_interval_s=0.0)

    progress(0.01)
    progress(0.02)
    progress(0.02)

    assert published == [0.01, 0.02]


def test_progress_clamps_fraction() -> None:
    published: list[float] = []
    progress = ProgressPublisher(published.append, lambda: False, min_interval_s=0.0)

    progress(1.7)
    progress(-0.5)

    assert published == [1.0]


def test_progress_cancels_after_signal() -> None:
    stopping = {"value": False}
    progress = ProgressPublisher(lambda _: None, lambda: stopping["value"])
    progress(0.1)
    stopping["value"] = True

    with pytest.raises(LoadCancelled):
        progress(0.2)
