"""The session's request queue and its inflight list.

The gateway LPUSHes items onto `queue`, so its right end has the oldest item. The
worker moves items from the queue's right end onto the inflight list's left
end, so inflight also keeps the oldest at the right. An item leaves inflight
only in the same atomic script that publishes its response, so a crash or a
SIGTERM at any point leaves every unanswered item parked in inflight, where
the next worker for the session claims it first. Delivery is therefore at
least once: an item whose response went out just before a crash is never
answered twice, but one that was being computed is.

Round trips: a waiting worker sends BLMOVE and a drain script in one pipeline,
so Redis drains the rest of the queue as soon as the BLMOVE returns. The
acknowledgement of a batch's last item also moves the next batch into
inflight and returns it, so back-to-back requests cost one round trip each.
"""

from __future__ import annotations

import redis
from bellhop_shared.keys import Keys
from bellhop_shared.redis_client import connection_options

# Fill inflight, which already contains `inflight_count` items, up to `limit`
# items from the queue, then return the oldest `limit` items of inflight,
# newest first. Items parked by an earlier worker are already at the right
# end, so they come out oldest.
_FILL_INFLIGHT = """
local room = limit - inflight_count
while room > 0 and redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do
    room = room - 1
end
return redis.call('LRANGE', KEYS[2], -limit, -1)
"""

# ARGV: limit.
_DRAIN_SCRIPT = (
    """
local limit = tonumber(ARGV[1])
local inflight_count = redis.call('LLEN', KEYS[2])
"""
    + _FILL_INFLIGHT
)

# ARGV: limit. Runs right after a BLMOVE in the same pipeline. An empty
# inflight means the BLMOVE timed out, and the script returns at once, so an
# idle wait costs Redis one LLEN besides the BLMOVE.
_DRAIN_AFTER_WAIT_SCRIPT = (
    """
local limit = tonumber(ARGV[1])
local inflight_count = redis.call('LLEN', KEYS[2])
if inflight_count == 0 then
    return {}
end
"""
    + _FILL_INFLIGHT
)

# ARGV: item, "1" to publish, response, channel, limit. Publish the response,
# remove the item's oldest copy from inflight, then, when limit > 0, fill
# inflight as the drain script does and return the next batch newest first.
_ACKNOWLEDGE_SCRIPT = (
    """
if ARGV[2] == '1' then
    redis.call('PUBLISH', ARGV[4], ARGV[3])
end
redis.call('LREM', KEYS[2], -1, ARGV[1])
local limit = tonumber(ARGV[5])
if limit == 0 then
    return {}
end
local inflight_count = redis.call('LLEN', KEYS[2])
"""
    + _FILL_INFLIGHT
)


class WaitInterrupted(BaseException):
    """Raised by a signal handler to end a BLMOVE that is waiting for a request.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` in
    redis-py swallows it.
    """


def connect_raw(url: str) -> redis.Redis:
    """Connect without decoding replies, so items that are not UTF-8 still arrive.

    The socket timeout is the shared one, longer than any BLMOVE block timeout.
    """
    return redis.Redis.from_url(url, decode_responses=False, **connection_options(url))


class RequestQueue:
    """Claim batches of raw items for one session and acknowledge them one by one.

    Only one thread may use a queue. Give it a client of its own when a signal
    handler may interrupt its wait (see interrupt_wait), because the
    interrupted connection is closed with the client.
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, session_id: str, max_batch: int
    ) -> None:
        self._client = client
        self._keys = [keys.queue(session_id), keys.inflight(session_id)]
        self._results = keys.results(session_id)
        self._max_batch = max_batch
        self._drain = client.register_script(_DRAIN_SCRIPT)
        self._acknowledge = client.register_script(_ACKNOWLEDGE_SCRIPT)
        # The batch that the last acknowledgement fetched, [] when the queue
        # was seen empty, None when unknown and the next claim must drain.
        self._next_batch: list[bytes] | None = None
        self._waiting = False
        self._stop_waiting = False

    def claim(self, block_timeout_s: float) -> list[bytes]:
        """Return the next batch, oldest first, or [] when none came in time.

        A batch parked in inflight is returned before anything new. After
        interrupt_wait, return [] instead of waiting.
        """
        batch = self._next_batch
        self._next_batch = None
        if batch is None:
            batch = self._drain_into_inflight()
        if batch or self._stop_waiting:
            return batch
        batch = self._wait_and_drain(block_timeout_s)
        if not batch:
            self._next_batch = []
        return batch

    def interrupt_wait(self) -> None:
        """End a BLMOVE in progress and skip later ones; call from a signal handler.

        Raises WaitInterrupted inside the waiting claim when it is blocked on
        Redis. That claim then closes the client, because a reply may still be
        due on its connection. Later claims return [] instead of waiting.
        """
        self._stop_waiting = True
        if self._waiting:
            self._waiting = False
            raise WaitInterrupted

    def acknowledge(
        self, item: bytes, response: str | None, fetch_next: bool = False
    ) -> None:
        """Publish the item's response, if any, and drop the item from inflight.

        Both happen in one script. LREM with count -1 removes the copy nearest
        the right end, which is the oldest and so the one processed. With
        fetch_next, the same script moves the next batch into inflight, and
        the next claim returns it without another round trip.
        """
        publish = "0" if response is None else "1"
        limit = self._max_batch if fetch_next else 0
        newest_first = self._acknowledge(
            keys=self._keys,
            args=[item, publish, response or "", self._results, limit],
        )
        if fetch_next:
            self._next_batch = list(reversed(newest_first))

    def inflight_length(self) -> int:
        return int(self._client.llen(self._keys[1]))

    def _wait_and_drain(self, block_timeout_s: float) -> list[bytes]:
        try:
            # Set the flag before the check, so a signal that arrives between
            # them either is seen by the check or raises in the BLMOVE.
            self._waiting = True
            if self._stop_waiting:
                return []
            return self._send_wait_and_drain(block_timeout_s)
        except WaitInterrupted:
            # Anything that BLMOVE moved just before the signal stays parked.
            self._client.close()
            return []
        finally:
            self._waiting = False

    def _send_wait_and_drain(self, block_timeout_s: float) -> list[bytes]:
        # EVAL, not a registered Script: in a pipeline, redis-py 8.2 sends
        # SCRIPT EXISTS before every execute, one more round trip. Redis caches
        # the compiled script by its SHA1, so EVAL only costs the resent text.
        pipe = self._client.pipeline(transaction=False)
        # Redis 6+ accepts a fractional timeout; redis-py annotates it as int.
        pipe.blmove(
            self._keys[0],
            self._keys[1],
            block_timeout_s,  # type: ignore[arg-type]
            "RIGHT",
            "LEFT",
        )
        pipe.eval(_DRAIN_AFTER_WAIT_SCRIPT, 2, *self._keys, self._max_batch)
        _, newest_first = pipe.execute()
        return list(reversed(newest_first))

    def _drain_into_inflight(self) -> list[bytes]:
        newest_first = self._drain(keys=self._keys, args=[self._max_batch])
        return list(reversed(newest_first))
