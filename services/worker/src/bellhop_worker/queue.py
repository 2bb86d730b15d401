"""The session's request queue and its inflight list.

The gateway LPUSHes items onto `queue`, so its right end has the oldest item. The
worker moves items from the queue's right end onto the inflight list's left
end, so inflight also keeps the oldest at the right. An item leaves inflight
only in the same atomic script that publishes its response, so a crash or a
SIGTERM at any point leaves every unanswered item parked in inflight, where
the next worker for the session claims it first. Delivery is therefore at
least once: an item whose response went out just before a crash is never
answered twice, but one that was being computed is.

Round trips: a wait is a BLMOVE followed by a drain script in the same
write, so Redis drains the rest of the queue as soon as the BLMOVE returns.
The acknowledgement of a batch's last item goes in front of them in that
write, so a worker that serves one request at a time costs Redis one round
trip per request. Where the server accepts CLIENT REPLY SKIP, that
acknowledgement goes without a reply, so the worker wakes once per request,
when the next request arrives, instead of also on the acknowledgement's
reply. A failed acknowledgement then goes unseen, but its item stays in
inflight, where the drain after the wait returns it with the next batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from bellhop_shared.keys import Keys
from bellhop_shared.logging import describe_error
from bellhop_shared.redis_client import connection_options
from redis.connection import AbstractConnection

logger = logging.getLogger(__name__)

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

# ARGV: limit. Runs right after a BLMOVE in the same write. An empty
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

# ARGV: item, "1" to publish, response, channel. Publish the response, then
# remove the item's oldest copy from inflight.
_ACKNOWLEDGE_SCRIPT = """
if ARGV[2] == '1' then
    redis.call('PUBLISH', ARGV[4], ARGV[3])
end
redis.call('LREM', KEYS[2], -1, ARGV[1])
return 1
"""


# PING with this argument follows CLIENT REPLY SKIP and a bare PING, to learn
# whether the server skips replies (see RequestQueue._server_skips_replies).
_PROBE = b"bellhop-reply-skip-probe"
_SKIP_NEXT_REPLY = ("CLIENT", "REPLY", "SKIP")


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

    The queue keeps one connection of the client for itself and writes each
    round trip's commands to it at once. Writing and reading separately lets
    it read an acknowledgement's reply before a signal may cut the wait
    short. It is also cheaper: with redis-py 8.2 and hiredis 3.5 on a busy
    2-core machine, sending the same commands as a client pipeline measured
    about 30 us more CPU per request, and a round trip of its own for the
    acknowledgement about 100 us more. Scripts go as EVAL with their text,
    which Redis caches compiled by its SHA1, so a restarted Redis never
    replies NOSCRIPT in the middle of a write.
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, session_id: str, max_batch: int
    ) -> None:
        self._client = client
        self._connection: AbstractConnection | None = None
        self._session_id = session_id
        self._keys = (keys.queue(session_id), keys.inflight(session_id))
        self._results = keys.results(session_id)
        self._max_batch = max_batch
        # True after a drain found the queue empty, so the next claim waits
        # at once instead of draining first.
        self._seen_empty = False
        # False when the last drain returned all of inflight, which is then
        # empty once that batch is acknowledged.
        self._inflight_may_hold_more = True
        self._waiting = False
        self._stop_waiting = False
        # Whether the server skips replies on CLIENT REPLY SKIP; None until a
        # probe finds out, and again after a failed round trip.
        self._skips_replies: bool | None = None
        # The item whose acknowledgement last went out without a reply; the
        # next batch starting with it means that acknowledgement failed.
        self._unconfirmed: bytes | None = None

    def claim(self, block_timeout_s: float) -> list[bytes]:
        """Return the next batch, oldest first, or [] when none came in time.

        A batch parked in inflight is returned before anything new. After
        interrupt_wait, return [] instead of waiting.
        """
        if not self._seen_empty:
            batch = self._drain_into_inflight()
            if batch or self._stop_waiting:
                return batch
        return self._wait_and_drain(block_timeout_s, [])

    def acknowledge(self, item: bytes, response: bytes | str | None) -> None:
        """Publish the item's response, if any, and drop the item from inflight.

        Both happen in one script. LREM with count -1 removes the copy nearest
        the right end, which is the oldest and so the one processed.
        """
        self._round_trip([self._acknowledge_command(item, response)])

    def acknowledge_and_claim(
        self, item: bytes, response: bytes | str | None, block_timeout_s: float
    ) -> list[bytes]:
        """Acknowledge the last item of a batch, then claim the next batch.

        Usually one write carries the acknowledgement, the BLMOVE and the
        drain. Redis runs the acknowledgement before it starts waiting, and
        its reply, when there is one, is read before a signal may interrupt
        the wait, so its response is published in any case.
        """
        acknowledgement = self._acknowledge_command(item, response)
        if self._inflight_may_hold_more:
            # A full batch may have left parked items in inflight, which a
            # BLMOVE on an empty queue would keep waiting until its timeout.
            self.acknowledge(item, response)
            return self.claim(block_timeout_s)
        if self._stop_waiting:
            return self._wait_and_drain(block_timeout_s, [acknowledgement])
        if self._skips_replies is None:
            self._skips_replies = self._server_skips_replies()
        if self._skips_replies:
            # No reply to read means no wakeup before the next request. An
            # acknowledgement that failed left its item at the oldest end of
            # inflight, and the drain after the BLMOVE returns it again.
            self._unconfirmed = item
            return self._wait_and_drain(
                block_timeout_s, [], unanswered=[_SKIP_NEXT_REPLY, acknowledgement]
            )
        return self._wait_and_drain(block_timeout_s, [acknowledgement])

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

    def inflight_length(self) -> int:
        (length,) = self._round_trip([("LLEN", self._keys[1])])
        return int(length)

    def _acknowledge_command(
        self, item: bytes, response: bytes | str | None
    ) -> tuple[Any, ...]:
        publish = "0" if response is None else "1"
        return (
            "EVAL",
            _ACKNOWLEDGE_SCRIPT,
            2,
            *self._keys,
            item,
            publish,
            response or b"",
            self._results,
        )

    def _wait_and_drain(
        self,
        block_timeout_s: float,
        before: list[tuple[Any, ...]],
        unanswered: Sequence[tuple[Any, ...]] = (),
    ) -> list[bytes]:
        """Send unanswered and before, then BLMOVE and drain, in one write.

        Commands in unanswered get no reply: they are CLIENT REPLY SKIP and
        the command it silences. Replies to the commands in before are read
        first.
        """
        if self._stop_waiting:
            # A signal came after the caller chose the commands. Send them
            # with their replies, so the acknowledgement is published and
            # confirmed before the worker stops.
            answered = [*(c for c in unanswered if c != _SKIP_NEXT_REPLY), *before]
            self._unconfirmed = None
            if answered:
                self._round_trip(answered)
            return []
        # Redis 6+ accepts a fractional BLMOVE timeout.
        wait = ("BLMOVE", *self._keys, "RIGHT", "LEFT", block_timeout_s)
        drain = ("EVAL", _DRAIN_AFTER_WAIT_SCRIPT, 2, *self._keys, self._max_batch)
        connection = self._send([*unanswered, *before, wait, drain])
        # A signal that arrives until the flag is set below only sets
        # _stop_waiting, so the replies to before are always read.
        try:
            self._read(connection, len(before))
        except redis.ResponseError:
            # The wait's replies are still due, so the connection must go.
            connection.disconnect()
            raise
        try:
            # Set the flag before the check, so a signal that arrives between
            # them either is seen by the check or raises in the BLMOVE.
            self._waiting = True
            if self._stop_waiting:
                self._client.close()
                return []
            _, newest_first = self._read(connection, 2)
        except redis.ResponseError:
            # With unanswered, an error may come from CLIENT REPLY itself (an
            # ACL changed since the probe), and the count of replies due is
            # then unknown: drop the connection and probe again.
            connection.disconnect()
            self._unconfirmed = None
            raise
        except WaitInterrupted:
            # Anything that BLMOVE moved just before the signal stays parked.
            self._client.close()
            return []
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            connection.disconnect()
            if not before and not unanswered:
                raise
            # The acknowledgement went out, so a retry must not send it
            # again: a second LREM could drop an identical item that the lost
            # BLMOVE parked. Report no batch. The next claim drains first,
            # which returns anything the BLMOVE moved, and the item itself
            # when its acknowledgement never ran.
            logger.warning(
                "session %s lost its Redis connection while waiting for requests "
                "error=%s; claiming again",
                self._session_id,
                describe_error(exc),
            )
            return []
        finally:
            self._waiting = False
        batch = list(reversed(newest_first))
        self._check_unconfirmed(batch)
        return self._note_batch(batch)

    def _check_unconfirmed(self, batch: list[bytes]) -> None:
        """Stop skipping replies when an unconfirmed item came back.

        Its acknowledgement failed, and one that fails every time would
        otherwise repeat without a trace. With replies, the next failure
        raises like any other Redis error.
        """
        unconfirmed, self._unconfirmed = self._unconfirmed, None
        if unconfirmed is not None and batch and batch[0] == unconfirmed:
            logger.warning(
                "session %s acknowledgement sent without a reply failed; the "
                "request is processed again and later acknowledgements read "
                "their replies",
                self._session_id,
            )
            self._skips_replies = False

    def _server_skips_replies(self) -> bool:
        """Send CLIENT REPLY SKIP, PING, PING probe; True when only the last replies.

        A server or proxy that rejects or ignores CLIENT REPLY (an ACL that
        denies it, say) replies to all three, and the queue then reads every
        acknowledgement's reply.
        """
        connection = self._send([_SKIP_NEXT_REPLY, ("PING",), ("PING", _PROBE)])
        for position in range(3):
            try:
                reply = self._read(connection, 1)[0]
            except redis.ResponseError:
                continue
            if reply == _PROBE:
                skips = position == 0
                logger.debug(
                    "session %s Redis skips replies on CLIENT REPLY SKIP: %s",
                    self._session_id,
                    skips,
                )
                return skips
        # Replies that match neither case: start over on a new connection.
        connection.disconnect()
        return False

    def _drain_into_inflight(self) -> list[bytes]:
        drain = ("EVAL", _DRAIN_SCRIPT, 2, *self._keys, self._max_batch)
        (newest_first,) = self._round_trip([drain])
        return self._note_batch(list(reversed(newest_first)))

    def _forget_position(self) -> None:
        """Make the next claim drain first; called when a send or read failed.

        A failed round trip may have moved items into inflight without
        returning them, and only a drain returns those.
        """
        self._seen_empty = False
        self._inflight_may_hold_more = True
        self._skips_replies = None
        self._unconfirmed = None

    def _note_batch(self, batch: list[bytes]) -> list[bytes]:
        """Set _seen_empty and _inflight_may_hold_more from a drain's batch."""
        self._seen_empty = not batch
        # A drain returns all of inflight unless it returns max_batch items.
        self._inflight_may_hold_more = len(batch) >= self._max_batch
        return batch

    def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        return self._read(self._send(commands), len(commands))

    def _read(self, connection: AbstractConnection, count: int) -> list[Any]:
        """Read count replies; after a failure, make the next claim drain first."""
        try:
            return _read_replies(connection, count)
        except BaseException:
            self._forget_position()
            raise

    def _send(self, commands: list[tuple[Any, ...]]) -> AbstractConnection:
        """Write commands in one go on the held connection, connecting if needed."""
        if self._connection is None:
            self._connection = self._client.connection_pool.get_connection()
        # hiredis packs the arguments (str, bytes, int, float) in C. The
        # connection's own pack_commands measured 20 us slower for a wait
        # with its acknowledgement.
        packed = b"".join([hiredis.pack_command(command) for command in commands])
        try:
            self._connection.send_packed_command([packed])
        except BaseException:
            # Part of the write may have reached Redis and moved items.
            self._forget_position()
            raise
        return self._connection


def _read_replies(connection: AbstractConnection, count: int) -> list[Any]:
    """Read count replies; raise the first error reply after reading them all.

    Reading every reply keeps the connection in step with its commands.
    """
    replies = []
    error: redis.ResponseError | None = None
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as exc:
            error = error or exc
            replies.append(None)
    if error is not None:
        raise error
    return replies
