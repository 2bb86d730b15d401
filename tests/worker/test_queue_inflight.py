"""RequestQueue against a real Redis: claim order, parking and acknowledgement."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from bellhop_shared.keys import Keys, new_session_id
from bellhop_worker.queue import RequestQueue, connect_raw
from support import wait_until

KEYS = Keys()


@pytest.fixture
def raw_client(redis_url: str, redis_client: redis.Redis) -> Iterator[redis.Redis]:
    client = connect_raw(redis_url)
    yield client
    client.close()


@pytest.fixture
def session_id() -> str:
    return new_session_id()


def make_queue(
    client: redis.Redis, session_id: str, max_batch: int = 100
) -> RequestQueue:
    return RequestQueue(client, KEYS, session_id, max_batch)


def test_queue_claim_returns_oldest_first(
    raw_client: redis.Redis, session_id: str
) -> None:
    for item in (b"one", b"two", b"three"):
        raw_client.lpush(KEYS.queue(session_id), item)

    batch = make_queue(raw_client, session_id).claim(0.5)

    assert batch == [b"one", b"two", b"three"]
    assert raw_client.llen(KEYS.queue(session_id)) == 0
    assert raw_client.llen(KEYS.inflight(session_id)) == 3


def test_queue_claim_empty_returns_nothing(
    raw_client: redis.Redis, session_id: str
) -> None:
    assert make_queue(raw_client, session_id).claim(0.2) == []


def test_queue_claim_wakes_on_push(
    raw_client: redis.Redis, redis_url: str, session_id: str
) -> None:
    pusher = redis.Redis.from_url(redis_url)
    queue = make_queue(raw_client, session_id)

    timer = threading.Timer(0.2, pusher.lpush, (KEYS.queue(session_id), b"late"))
    started = time.monotonic()
    timer.start()
    batch = queue.claim(10.0)
    timer.join()
    pusher.close()

    assert batch == [b"late"]
    # The claim returned on the push, not at the end of its 10 s block.
    assert time.monotonic() - started < 9.0


def test_queue_parked_items_come_first(
    raw_client: redis.Redis, session_id: str
) -> None:
    # A crashed worker left two items in inflight, newest at the left.
    raw_client.lpush(KEYS.inflight(session_id), b"parked-1", b"parked-2")
    raw_client.lpush(KEYS.queue(session_id), b"new-1", b"new-2")

    batch = make_queue(raw_client, session_id).claim(0.2)

    assert batch == [b"parked-1", b"parked-2", b"new-1", b"new-2"]


def test_queue_max_batch_leaves_rest_queued(
    raw_client: redis.Redis, session_id: str
) -> None:
    raw_client.lpush(KEYS.queue(session_id), *[f"r{i}".encode() for i in range(5)])
    queue = make_queue(raw_client, session_id, max_batch=2)

    first = queue.claim(0.2)
    for item in first:
        queue.acknowledge(item, None)
    second = queue.claim(0.2)

    assert first == [b"r0", b"r1"]
    assert second == [b"r2", b"r3"]
    assert raw_client.llen(KEYS.queue(session_id)) == 1


def test_queue_max_batch_counts_parked_items(
    raw_client: redis.Redis, session_id: str
) -> None:
    raw_client.lpush(KEYS.inflight(session_id), b"p0", b"p1", b"p2")
    raw_client.lpush(KEYS.queue(session_id), b"new")

    batch = make_queue(raw_client, session_id, max_batch=2).claim(0.2)

    assert batch == [b"p0", b"p1"]
    assert raw_client.llen(KEYS.queue(session_id)) == 1


def test_queue_acknowledge_publishes_then_removes(
    raw_client: redis.Redis, redis_client: redis.Redis, session_id: str
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(KEYS.results(session_id))
    wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    raw_client.lpush(KEYS.queue(session_id), b"first", b"second")
    queue = make_queue(raw_client, session_id)
    batch = queue.claim(0.2)

    queue.acknowledge(batch[0], '{"answer": 1}')
    message: Any = wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    pubsub.close()

    assert message["data"] == '{"answer": 1}'
    assert raw_client.lrange(KEYS.inflight(session_id), 0, -1) == [b"second"]


def test_queue_acknowledge_without_response(
    raw_client: redis.Redis, session_id: str
) -> None:
    raw_client.lpush(KEYS.queue(session_id), b"notification")
    queue = make_queue(raw_client, session_id)

    queue.acknowledge(queue.claim(0.2)[0], None)

    assert queue.inflight_length() == 0


def test_queue_acknowledge_removes_oldest_duplicate(
    raw_client: redis.Redis, session_id: str
) -> None:
    raw_client.lpush(KEYS.queue(session_id), b"same", b"other", b"same")
    queue = make_queue(raw_client, session_id)
    batch = queue.claim(0.2)

    queue.acknowledge(batch[0], None)

    assert raw_client.lrange(KEYS.inflight(session_id), 0, -1) == [b"same", b"other"]


def test_queue_keeps_non_utf8_bytes(raw_client: redis.Redis, session_id: str) -> None:
    raw_client.lpush(KEYS.queue(session_id), b"\xff\xfe\x00garbage")
    queue = make_queue(raw_client, session_id)

    batch = queue.claim(0.2)
    queue.acknowledge(batch[0], None)

    assert batch == [b"\xff\xfe\x00garbage"]
    assert queue.inflight_length() == 0


def test_queue_acknowledge_and_claim_takes_pushed_items(
    raw_client: redis.Redis, redis_client: redis.Redis, session_id: str
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(KEYS.results(session_id))
    wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    raw_client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(raw_client, session_id, max_batch=2)
    batch = queue.claim(0.2)
    raw_client.lpush(KEYS.queue(session_id), b"second", b"third", b"fourth")

    second = queue.acknowledge_and_claim(batch[0], b'{"answer": 1}', 10.0)
    message: Any = wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    pubsub.close()

    assert message["data"] == '{"answer": 1}'
    assert second == [b"second", b"third"]
    inflight = raw_client.lrange(KEYS.inflight(session_id), 0, -1)
    assert inflight == [b"third", b"second"]
    assert raw_client.llen(KEYS.queue(session_id)) == 1


def test_queue_acknowledge_and_claim_waits_for_push(
    raw_client: redis.Redis, redis_url: str, session_id: str
) -> None:
    raw_client.lpush(KEYS.queue(session_id), b"only")
    queue = make_queue(raw_client, session_id)
    only = queue.claim(0.2)
    pusher = redis.Redis.from_url(redis_url)
    timer = threading.Timer(0.2, pusher.lpush, (KEYS.queue(session_id), b"later"))

    started = time.monotonic()
    timer.start()
    later = queue.acknowledge_and_claim(only[0], None, 10.0)
    timer.join()
    pusher.close()

    assert later == [b"later"]
    assert time.monotonic() - started < 9.0
    assert raw_client.lrange(KEYS.inflight(session_id), 0, -1) == [b"later"]


def test_queue_acknowledge_and_claim_empty_queue(
    raw_client: redis.Redis, session_id: str
) -> None:
    raw_client.lpush(KEYS.queue(session_id), b"only")
    queue = make_queue(raw_client, session_id)

    nothing = queue.acknowledge_and_claim(queue.claim(0.2)[0], None, 0.2)

    assert nothing == []
    assert queue.inflight_length() == 0
    # The wait found the queue empty, so this claim waits without draining.
    assert queue.claim(0.2) == []


def test_queue_acknowledge_and_claim_after_full_batch(
    raw_client: redis.Redis, session_id: str
) -> None:
    # Parked items beyond max_batch stay in inflight after the first batch.
    raw_client.lpush(KEYS.inflight(session_id), b"p0", b"p1", b"p2")
    queue = make_queue(raw_client, session_id, max_batch=2)
    first = queue.claim(0.2)
    queue.acknowledge(first[0], None)

    started = time.monotonic()
    rest = queue.acknowledge_and_claim(first[1], None, 10.0)

    assert first == [b"p0", b"p1"]
    assert rest == [b"p2"]
    # The parked item came back at once, not after the 10 s block.
    assert time.monotonic() - started < 9.0


def test_queue_acknowledge_and_claim_after_interrupt(
    raw_client: redis.Redis, redis_client: redis.Redis, session_id: str
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(KEYS.results(session_id))
    wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    raw_client.lpush(KEYS.queue(session_id), b"last")
    queue = make_queue(raw_client, session_id)
    batch = queue.claim(0.2)
    queue.interrupt_wait()

    started = time.monotonic()
    nothing = queue.acknowledge_and_claim(batch[0], b"done", 10.0)
    message: Any = wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    pubsub.close()

    assert nothing == []
    assert time.monotonic() - started < 9.0
    assert message["data"] == "done"
    assert queue.inflight_length() == 0


def test_queue_interrupt_during_wait_keeps_acknowledgement(
    raw_client: redis.Redis, redis_client: redis.Redis, session_id: str
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(KEYS.results(session_id))
    wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    raw_client.lpush(KEYS.queue(session_id), b"last")
    queue = make_queue(raw_client, session_id)
    batch = queue.claim(0.2)
    previous = signal.signal(signal.SIGALRM, lambda *_: queue.interrupt_wait())
    signal.setitimer(signal.ITIMER_REAL, 0.3)

    try:
        started = time.monotonic()
        nothing = queue.acknowledge_and_claim(batch[0], b"done", 10.0)
        elapsed_s = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    message: Any = wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    pubsub.close()

    assert nothing == []
    assert elapsed_s < 9.0
    assert message["data"] == "done"
    assert redis_client.llen(KEYS.inflight(session_id)) == 0


def test_queue_error_reply_keeps_connection_usable(
    raw_client: redis.Redis, session_id: str
) -> None:
    raw_client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(raw_client, session_id)
    batch = queue.claim(0.2)
    # A string where inflight should be makes the acknowledgement's LREM fail
    # while the BLMOVE and the drain behind it are still unanswered.
    raw_client.delete(KEYS.inflight(session_id))
    raw_client.set(KEYS.inflight(session_id), b"not a list")

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        queue.acknowledge_and_claim(batch[0], None, 0.2)
    raw_client.delete(KEYS.inflight(session_id))
    raw_client.lpush(KEYS.queue(session_id), b"second")

    assert queue.claim(0.2) == [b"second"]
    assert queue.inflight_length() == 1


def test_queue_claim_wakes_with_whole_push(
    raw_client: redis.Redis, redis_url: str, session_id: str
) -> None:
    pusher = redis.Redis.from_url(redis_url)
    queue = make_queue(raw_client, session_id)
    assert queue.claim(0.1) == []

    timer = threading.Timer(0.2, pusher.lpush, (KEYS.queue(session_id), b"a", b"b"))
    timer.start()
    batch = queue.claim(10.0)
    timer.join()
    pusher.close()

    # The drain pipelined after the BLMOVE takes the rest of the push.
    assert batch == [b"a", b"b"]
    assert raw_client.llen(KEYS.queue(session_id)) == 0
    assert raw_client.llen(KEYS.inflight(session_id)) == 2


def test_queue_interrupt_wait_before_claim(
    raw_client: redis.Redis, session_id: str
) -> None:
    queue = make_queue(raw_client, session_id)
    queue.interrupt_wait()

    started = time.monotonic()
    batch = queue.claim(10.0)

    assert batch == []
    assert time.monotonic() - started < 9.0


class DropAfterReplies:
    """Wraps a connection: reads `keep` replies, then loses the next one."""

    def __init__(self, connection: Any, keep: int) -> None:
        self._connection = connection
        self._left = keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._connection.read_response(*args, **kwargs)
        if self._left == 0:
            raise redis.ConnectionError("connection dropped by the test")
        self._left -= 1
        return reply


def test_queue_lost_wait_reply_recovers(
    raw_client: redis.Redis, redis_url: str, session_id: str
) -> None:
    raw_client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(raw_client, session_id)
    first = queue.claim(0.2)
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe(KEYS.results(session_id))
    listener.get_message(timeout=1.0)
    raw_client.lpush(KEYS.queue(session_id), b"same", b"same")
    # The acknowledgement's reply arrives; the BLMOVE's, which moved an item
    # into inflight, is lost with the connection.
    queue._connection = DropAfterReplies(queue._connection, keep=1)  # type: ignore[assignment]

    nothing = queue.acknowledge_and_claim(first[0], b'{"id":"first"}', 5.0)
    queue._connection = queue._connection._connection  # type: ignore[union-attr]
    started = time.monotonic()
    batch = queue.claim(5.0)
    published = []
    while (message := listener.get_message(timeout=0.5)) is not None:
        published.append(message["data"])
    listener.close()

    assert nothing == []
    assert batch == [b"same", b"same"]
    assert time.monotonic() - started < 1.0
    assert published == [b'{"id":"first"}']


@pytest.fixture
def acl_client(
    redis_url: str, redis_client: redis.Redis
) -> Iterator[Callable[..., redis.Redis]]:
    """Connect as a new ACL user with all commands except those in `denied`."""
    users: list[str] = []
    clients: list[redis.Redis] = []

    def connect(*denied: str) -> redis.Redis:
        user = f"queue-test-{len(users)}"
        redis_client.execute_command(
            "ACL", "SETUSER", user, "on", ">secret", "~*", "&*", "+@all", *denied
        )
        users.append(user)
        host_and_db = redis_url.removeprefix("redis://")
        client = connect_raw(f"redis://{user}:secret@{host_and_db}")
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
    for user in users:
        redis_client.execute_command("ACL", "DELUSER", user)


def reply_skips(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_client|reply", {}).get("calls", 0))


def test_queue_acknowledgement_sent_without_reply(
    raw_client: redis.Redis, session_id: str
) -> None:
    listener = raw_client.pubsub()
    listener.subscribe(KEYS.results(session_id))
    listener.get_message(timeout=1.0)
    raw_client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(raw_client, session_id)
    first = queue.claim(0.2)
    skips_before = reply_skips(raw_client)
    raw_client.lpush(KEYS.queue(session_id), b"second")

    second = queue.acknowledge_and_claim(first[0], b"answer", 1.0)
    message = listener.get_message(timeout=1.0)
    listener.close()

    assert second == [b"second"]
    assert message is not None
    assert message["data"] == b"answer"
    # One CLIENT REPLY SKIP for the probe, one for the acknowledgement.
    assert reply_skips(raw_client) - skips_before == 2
    assert raw_client.lrange(KEYS.inflight(session_id), 0, -1) == [b"second"]


def test_queue_failed_silent_acknowledgement_serves_item_again(
    acl_client: Callable[..., redis.Redis], session_id: str
) -> None:
    # PUBLISH is denied, so the acknowledgement script fails. Without a
    # reply, the queue cannot detect the error.
    client = acl_client("-publish")
    client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(client, session_id)
    first = queue.claim(0.2)
    client.lpush(KEYS.queue(session_id), b"second")

    batch = queue.acknowledge_and_claim(first[0], b"answer", 1.0)

    assert batch == [b"first", b"second"]


def test_queue_without_reply_skip_reads_acknowledgement(
    acl_client: Callable[..., redis.Redis], session_id: str
) -> None:
    client = acl_client("-client|reply")
    listener = client.pubsub()
    listener.subscribe(KEYS.results(session_id))
    listener.get_message(timeout=1.0)
    client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(client, session_id)
    first = queue.claim(0.2)
    client.lpush(KEYS.queue(session_id), b"second")

    second = queue.acknowledge_and_claim(first[0], b"answer", 1.0)
    message = listener.get_message(timeout=1.0)
    listener.close()

    assert second == [b"second"]
    assert message is not None
    assert message["data"] == b"answer"
    assert client.lrange(KEYS.inflight(session_id), 0, -1) == [b"second"]


def test_queue_failed_acknowledgement_raises_without_reply_skip(
    acl_client: Callable[..., redis.Redis], session_id: str
) -> None:
    client = acl_client("-publish", "-client|reply")
    client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(client, session_id)
    first = queue.claim(0.2)

    with pytest.raises(redis.ResponseError, match="can.t run this command"):
        queue.acknowledge_and_claim(first[0], b"answer", 0.2)

    assert client.lrange(KEYS.inflight(session_id), 0, -1) == [b"first"]


def test_queue_signal_during_probe_keeps_acknowledgement(
    raw_client: redis.Redis, session_id: str
) -> None:
    listener = raw_client.pubsub()
    listener.subscribe(KEYS.results(session_id))
    listener.get_message(timeout=1.0)
    raw_client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(raw_client, session_id)
    first = queue.claim(0.2)
    probe = queue._server_skips_replies

    def probe_then_signal() -> bool:
        skips = probe()
        queue.interrupt_wait()  # as the SIGTERM handler does
        return skips

    queue._server_skips_replies = probe_then_signal  # type: ignore[method-assign]

    nothing = queue.acknowledge_and_claim(first[0], b"answer", 10.0)
    message = listener.get_message(timeout=1.0)
    listener.close()

    assert nothing == []
    assert message is not None
    assert message["data"] == b"answer"
    assert raw_client.llen(KEYS.inflight(session_id)) == 0


def test_queue_repeated_silent_failure_turns_replies_on(
    acl_client: Callable[..., redis.Redis], session_id: str
) -> None:
    client = acl_client("-publish")
    client.lpush(KEYS.queue(session_id), b"only")
    queue = make_queue(client, session_id)
    first = queue.claim(0.2)

    again = queue.acknowledge_and_claim(first[0], b"answer", 0.2)

    assert again == [b"only"]
    with pytest.raises(redis.ResponseError, match="can.t run this command"):
        queue.acknowledge_and_claim(again[0], b"answer", 0.2)


def test_queue_probe_without_echo(
    acl_client: Callable[..., redis.Redis], session_id: str
) -> None:
    client = acl_client("-echo")
    client.lpush(KEYS.queue(session_id), b"first")
    queue = make_queue(client, session_id)
    first = queue.claim(0.2)
    client.lpush(KEYS.queue(session_id), b"second")

    started = time.monotonic()
    second = queue.acknowledge_and_claim(first[0], b"answer", 1.0)

    assert second == [b"second"]
    assert time.monotonic() - started < 2.0
    assert client.lrange(KEYS.inflight(session_id), 0, -1) == [b"second"]
