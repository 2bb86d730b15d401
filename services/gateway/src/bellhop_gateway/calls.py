"""The `rpc` event: check limits, queue the requests, wait for the responses.

Every path ends in an acknowledgement: a response, a batch array, None for
notifications only, or a JSON-RPC error. A request whose response does not
arrive within GATEWAY_RPC_TIMEOUT_S of being queued gets a TIMEOUT error, so
a client never waits forever.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from bellhop_shared.jsonrpc import (
    INTERNAL_ERROR,
    QUEUE_FULL,
    RATE_LIMITED,
    SESSION_ENDED,
    TIMEOUT,
    RpcError,
    error_response,
    is_valid_id,
)
from bellhop_shared.logging import LogThrottle, describe_error
from redis.exceptions import RedisError

from bellhop_gateway.limits import Admission, AdmissionResult
from bellhop_gateway.pipelined import ReplyLostError
from bellhop_gateway.rpc import (
    PreparedMessage,
    build_ack,
    decode_payload,
    error_ack,
    prepare,
)

if TYPE_CHECKING:
    from bellhop_gateway.link import SessionLink
    from bellhop_gateway.relay import PendingCall

logger = logging.getLogger(__name__)


def _request_id(payload: Any) -> Any:
    """Return the id of a single request that was rejected whole, else None."""
    if isinstance(payload, dict) and is_valid_id(payload.get("id")):
        return payload["id"]
    return None


# While Redis is down every request fails the same way, so one line per
# interval stands for them all.
_PUSH_FAILURE_LOG = LogThrottle(interval_s=10.0)

RESULTS_DOWN_MESSAGE = (
    "The gateway's results connection to Redis is down, so the request was not "
    "queued; retry in a moment."
)
LOST_MESSAGE = (
    "The gateway lost its results connection to Redis while it waited, so the "
    "response is lost, but the request may have run; check the session (ping "
    "returns its request count) before you send it again."
)


def _ended_message(link: SessionLink) -> str:
    if not link.finished:
        # The socket is closing, while the session itself may go on.
        return "This connection is closing; reconnect to resume the session."
    return (
        f"Session ended ({link.state.value}: {link.message}); "
        "reconnect to start a new session."
    )


async def handle_rpc(link: SessionLink, payload: Any) -> Any:
    """Return the acknowledgement for one client message."""
    limits = link.ctx.admitter.limits
    try:
        prepared = prepare(
            decode_payload(payload, limits.max_message_bytes), link.ctx.new_id
        )
    except RpcError as exc:
        logger.debug("%s rejected a message code=%d", link.label, exc.code)
        return error_response(_request_id(payload), exc.code, exc.message)
    if not prepared.queued:
        return build_ack(prepared, {})
    if link.finished or link.closed:
        return error_ack(prepared, SESSION_ENDED, _ended_message(link))
    if prepared.cost > limits.burst:
        return error_ack(
            prepared,
            RATE_LIMITED,
            f"Rate limited: a batch of {prepared.cost} requests exceeds the burst "
            f"of {limits.burst} (GATEWAY_RATE_BURST); split the batch.",
        )
    # The push lock is the first await on this path and it is FIFO, so the
    # messages of one socket reach the queue in the order sent. Waiting for
    # the subscription outside it would let a message that arrives after the
    # subscription overtake earlier ones that are being woken from the wait.
    async with link.push_lock:
        await link.subscribed.wait()
        if link.finished or link.closed:
            return error_ack(prepared, SESSION_ENDED, _ended_message(link))
        if not link.relay.is_subscribed:
            # The response would be published to no one, so nothing is queued.
            link.ctx.subscriber.retry_now()
            return error_ack(prepared, INTERNAL_ERROR, RESULTS_DOWN_MESSAGE)
        call, rejection = await _push(link, prepared)
    if rejection is not None:
        return rejection
    return await _wait_for_answers(link, prepared, call)


async def _push(
    link: SessionLink, prepared: PreparedMessage
) -> tuple[PendingCall, Any]:
    """Queue the message; return its call and, when it was not queued, the ack."""
    call = link.relay.register(prepared)
    try:
        admission = await link.ctx.admitter.push(
            link.session_id, prepared.item_text(), prepared.cost
        )
    except ReplyLostError as exc:
        # Redis may have queued the message, and the worker would then run it,
        # so the call waits for the responses as if it had been queued. If it
        # was not, the call ends with the usual timeout.
        logger.warning(
            "%s queue push sent but its reply was lost error=%s; waiting for "
            "the responses",
            link.label,
            describe_error(exc),
        )
        return call, None
    except (RedisError, OSError) as exc:
        link.relay.unregister(call)
        held_back = _PUSH_FAILURE_LOG.allow()
        if held_back is not None:
            logger.error(
                "%s queue push failed error=%s (%d more failures not logged)",
                link.label,
                describe_error(exc),
                held_back,
            )
        return call, error_ack(
            prepared, INTERNAL_ERROR, "The gateway could not queue the request; retry."
        )
    if _PUSH_FAILURE_LOG.is_active:
        logger.info(
            "queue pushes work again; %d failures were not logged",
            _PUSH_FAILURE_LOG.end(),
        )
    if admission.status is not Admission.QUEUED:
        link.relay.unregister(call)
        return call, _rejection(link, prepared, admission)
    return call, None


async def _wait_for_answers(
    link: SessionLink, prepared: PreparedMessage, call: PendingCall
) -> Any:
    logger.debug("%s queued requests=%d", link.label, prepared.cost)
    if not prepared.expected_ids:
        return build_ack(prepared, {})
    timeout_s = link.ctx.settings.gateway_rpc_timeout_s
    try:
        # A cancelled future is harmless: the relay skips futures that are done.
        async with asyncio.timeout(timeout_s):
            await call.future
    except TimeoutError:
        link.relay.unregister(call)
        logger.warning("%s request timed out after %.1f s", link.label, timeout_s)
        return error_ack(prepared, TIMEOUT, _timeout_message(link, timeout_s))
    # A `terminate` response arrives just before the session ends, so a call
    # with every response is answered even when the link has finished.
    is_complete = len(call.responses) == len(prepared.expected_ids)
    if not is_complete and (link.finished or link.closed):
        return error_ack(prepared, SESSION_ENDED, _ended_message(link))
    if not is_complete and call.lost:
        return error_ack(prepared, INTERNAL_ERROR, LOST_MESSAGE)
    return build_ack(prepared, call.responses)


def _timeout_message(link: SessionLink, timeout_s: float) -> str:
    return (
        f"Timed out: no response from the worker within {timeout_s:g} s "
        f"(GATEWAY_RPC_TIMEOUT_S) while the session was {link.state.value}; "
        "check the session state and send the request again."
    )


def _rejection(
    link: SessionLink, prepared: PreparedMessage, admission: AdmissionResult
) -> Any:
    limits = link.ctx.admitter.limits
    logger.debug("%s rejected a message reason=%s", link.label, admission.status.value)
    if admission.status is Admission.RATE_LIMITED:
        # Round the wait up to the 0.01 s the message shows, so a client that
        # waits retry_after_s finds enough tokens, and the message never shows
        # 0.00 s.
        retry_after_s = max(0.01, math.ceil(admission.detail * 100) / 100)
        return error_ack(
            prepared,
            RATE_LIMITED,
            f"Rate limited: over {limits.rate_per_s:g} requests/s with a burst of "
            f"{limits.burst}; retry in {retry_after_s:.2f} s.",
            {"retry_after_s": retry_after_s},
        )
    if admission.status is Admission.QUEUE_FULL:
        return error_ack(
            prepared,
            QUEUE_FULL,
            f"Queue full: {int(admission.detail)} messages are waiting, the limit is "
            f"{limits.max_queue} (GATEWAY_MAX_QUEUE); wait for answers, then retry.",
        )
    return error_ack(prepared, SESSION_ENDED, _ended_message(link))
