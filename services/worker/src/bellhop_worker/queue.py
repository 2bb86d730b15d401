"""The session's request queue and its inflight list.

The gateway LPUSHes items onto `queue`, so its right end has the oldest item. The
worker moves items from the queue's right end onto the inflight list's left
end, so inflight also keeps the oldest at the right. An item leaves inflight
only in the same MULTI/EXEC transaction that publishes its response, so a
crash or a SIGTERM at any point leaves every unanswered item parked in
inflight, where the next worker for the session claims it first. Delivery is
therefore at least once: an item whose response went out just before a crash
is never answered twice, but one that was being computed is.
"""

from __future__ import annotations

import redis
from bellhop_shared.keys import Keys
from bellhop_shared.redis_client import connection_options

# Fill inflight up to ARGV[1] items from the queue in one atomic step, then
# return the oldest ARGV[1] items of inflight, newest first. Items parked by an
# earlier worker are already at the right end, so they come out oldest.
_DRAIN_SCRIPT = """
local limit = tonumber(ARGV[1])
local room = limit - redis.call('LLEN', KEYS[2])
while room > 0 and redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do
    room = room - 1
end
return redis.call('LRANGE', KEYS[2], -limit, -1)
"""


def connect_raw(url: str) -> redis.Redis:
    """Connect without decoding replies, so items that are not UTF-8 still arrive.

    The socket timeout is the shared one, longer than any BLMOVE block timeout.
    """
    return redis.Redis.from_url(url, decode_responses=False, **connection_options(url))


class RequestQueue:
    """Claim batches of raw items for one session and acknowledge them one by one."""

    def __init__(
        self, client: redis.Redis, keys: Keys, session_id: str, max_batch: int
    ) -> None:
        self._client = client
        self._queue = keys.queue(session_id)
        self._inflight = keys.inflight(session_id)
        self._results = keys.results(session_id)
        self._max_batch = max_batch
        self._drain = client.register_script(_DRAIN_SCRIPT)

    def claim(self, block_timeout_s: float) -> list[bytes]:
        """Return the next batch, oldest first, or [] when none came in time.

        A batch parked in inflight is returned before anything new.
        """
        batch = self._drain_into_inflight()
        if batch:
            return batch
        # Redis 6+ accepts a fractional timeout, but redis-py annotates it as int.
        first = self._client.blmove(
            self._queue,
            self._inflight,
            block_timeout_s,  # type: ignore[arg-type]
            "RIGHT",
            "LEFT",
        )
        if first is None:
            return []
        return self._drain_into_inflight()

    def acknowledge(self, item: bytes, response: str | None) -> None:
        """Publish the item's response, if any, and drop the item from inflight.

        Both happen in one transaction. LREM with count -1 removes the copy
        nearest the right end, which is the oldest and so the one processed.
        """
        with self._client.pipeline(transaction=True) as pipe:
            if response is not None:
                pipe.publish(self._results, response)
            # redis-py annotates the value as str, but it sends bytes unchanged.
            pipe.lrem(self._inflight, -1, item)  # type: ignore[arg-type]
            pipe.execute()

    def inflight_length(self) -> int:
        return int(self._client.llen(self._inflight))

    def _drain_into_inflight(self) -> list[bytes]:
        newest_first = self._drain(
            keys=[self._queue, self._inflight], args=[self._max_batch]
        )
        return list(reversed(newest_first))
