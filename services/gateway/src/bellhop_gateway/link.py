"""A socket attached to a session on this replica: lifecycle, state and rpc calls.

A link subscribes to the session's results channel, requests a worker from
the orchestrator when the session is new, and turns worker state (from notifications,
and from the heartbeat key in case a notification was missed) into `session`
events. States only move forward: provisioning, starting, loading, ready, then
ended or failed. A finished link disconnects its socket and cleans up; a link
closed by a disconnect leaves the session to the grace period instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from bellhop_shared.logging import LogThrottle, describe_error
from bellhop_shared.states import (
    SESSION_ENDED_NOTIFICATION,
    STATE_NOTIFICATION,
    SessionState,
    WorkerState,
)
from redis.exceptions import RedisError

from bellhop_gateway import calls
from bellhop_gateway.context import GatewayContext
from bellhop_gateway.orchestrator import OrchestratorError
from bellhop_gateway.relay import ResultRelay
from bellhop_gateway.store import Holder, SessionRecord

logger = logging.getLogger(__name__)

# Every session of the replica polls Redis, so while Redis is down one line
# per interval stands for all of their failures.
_HEARTBEAT_READ_LOG = LogThrottle(interval_s=10.0)
_CLIENT_HEARTBEAT_LOG = LogThrottle(interval_s=10.0)

# How often an attached link re-reads the worker heartbeat once it is ready;
# before that it reads every GATEWAY_STATE_POLL_S.
READY_POLL_S = 5.0
# A ready worker whose heartbeat key is missing this many reads in a row has
# stopped; its key outlives it by WORKER_HEARTBEAT_TTL_S already.
MISSED_HEARTBEATS_LIMIT = 2
# How long a new session may wait for its worker's first heartbeat.
START_TIMEOUT_S = 180.0
RESUMED_ELSEWHERE_MESSAGE = "This session was resumed by another connection."

_RANK = {
    SessionState.PROVISIONING: 0,
    SessionState.STARTING: 1,
    SessionState.LOADING: 2,
    SessionState.READY: 3,
    SessionState.ENDED: 4,
    SessionState.FAILED: 4,
}

_FROM_WORKER = {
    WorkerState.STARTING: SessionState.STARTING,
    WorkerState.LOADING: SessionState.LOADING,
    WorkerState.READY: SessionState.READY,
    WorkerState.FAILED: SessionState.FAILED,
    WorkerState.TERMINATING: SessionState.ENDED,
}


class SessionLink:
    """One socket's attachment to one session, on this replica."""

    def __init__(
        self,
        ctx: GatewayContext,
        record: SessionRecord,
        socket_sid: str,
        resume_token: str,
        is_new: bool,
    ) -> None:
        self.ctx = ctx
        self.record = record
        self.socket_sid = socket_sid
        self.attachment = f"{ctx.gateway_id}/{socket_sid}"
        self.is_new = is_new
        self.label = f"gateway {ctx.gateway_id} session {record.session_id}"
        self.relay = ResultRelay(
            ctx.subscriber,
            ctx.keys.results(record.session_id),
            self._on_notification,
            self.label,
        )
        self.subscribed = asyncio.Event()
        # Pushes go out one at a time, in the order the client sent them: each
        # push may use another pooled Redis connection, and concurrent pushes
        # could reach Redis in any order.
        self.push_lock = asyncio.Lock()
        self.state = SessionState.PROVISIONING if is_new else SessionState.STARTING
        self.progress = 0.0
        self.message = ""
        self.worker_id: str | None = None
        self.finished = False
        self.closed = False
        self._resume_token = resume_token
        self._connected_at = time.time()
        self._tasks: list[asyncio.Task[Any]] = []
        self._provisioning: asyncio.Task[bool] | None = None
        self._finisher: asyncio.Task[None] | None = None
        self._emitted = False

    @property
    def session_id(self) -> str:
        return self.record.session_id

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run()))

    async def call(self, payload: Any) -> Any:
        """Return the acknowledgement for one `rpc` event (a request or a batch)."""
        return await calls.handle_rpc(self, payload)

    async def close(self) -> None:
        """Stop this link's tasks after its socket disconnected."""
        self.closed = True
        self.subscribed.set()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.relay.release_all()
        await self.relay.close()

    async def wait_provisioned(self) -> None:
        """Wait for an in-flight POST to the orchestrator, whatever its outcome."""
        if self._provisioning is not None:
            await asyncio.gather(
                asyncio.shield(self._provisioning), return_exceptions=True
            )

    def session_event(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "resume_token": self._resume_token,
            "state": self.state.value,
            "progress": self.progress,
            "message": self.message,
            "dataset": self.record.dataset,
            "worker_id": self.worker_id,
        }

    async def _run(self) -> None:
        if not await self.ctx.sockets.wait_connected(self.socket_sid):
            if not self.closed:
                logger.warning("%s socket did not finish connecting", self.label)
                self.finish(
                    SessionState.FAILED, "The connection did not complete; reconnect."
                )
            return
        if self.is_new:
            self.message = f"Requesting a worker for dataset {self.record.dataset}."
            await self._emit_state()
        if not await self._subscribe():
            return
        self._tasks.append(asyncio.create_task(self._keep_client_heartbeat()))
        if self.is_new:
            self._provisioning = asyncio.create_task(self._provision())
            if not await asyncio.shield(self._provisioning):
                return
        await self._watch_worker()

    async def _subscribe(self) -> bool:
        try:
            await self.relay.subscribe()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.error(
                "%s subscribe failed error=%s", self.label, describe_error(exc)
            )
            self.finish(
                SessionState.FAILED,
                "The gateway lost its connection to Redis; reconnect in a moment.",
            )
            return False
        finally:
            self.subscribed.set()
        return True

    async def _provision(self) -> bool:
        """POST the session to the orchestrator; False when the session failed."""
        record = self.record
        try:
            created = await self.ctx.orchestrator.create_session(
                record.session_id, record.dataset, record.user
            )
        except OrchestratorError as exc:
            expected = exc.code in ("unknown_dataset", "over_capacity")
            log = logger.warning if expected else logger.error
            log("%s provisioning failed code=%s: %s", self.label, exc.code, exc)
            self.finish(SessionState.FAILED, exc.public, forget=True)
            return False
        self.worker_id = created.get("worker_id") or None
        if created.get("state") in ("failed", "ended"):
            reason = created.get("ended_reason") or "the orchestrator ended the session"
            self.finish(SessionState.FAILED, f"The worker did not start: {reason}.")
            return False
        await self._apply(SessionState.STARTING, 0.0, "")
        return True

    async def _watch_worker(self) -> None:
        """Read the heartbeat key: it catches state changes pub/sub dropped."""
        started_at = time.monotonic()
        seen = False
        misses = 0
        while not self.finished:
            try:
                heartbeat = await self._read_heartbeat()
            except (RedisError, OSError) as exc:
                held_back = _HEARTBEAT_READ_LOG.allow()
                if held_back is not None:
                    logger.warning(
                        "%s heartbeat read failed error=%s (%d more not logged)",
                        self.label,
                        describe_error(exc),
                        held_back,
                    )
                await asyncio.sleep(self.ctx.settings.gateway_state_poll_s)
                continue
            if heartbeat is not None:
                seen, misses = True, 0
                await self._apply_worker(heartbeat)
            elif seen:
                misses += 1
                if misses >= MISSED_HEARTBEATS_LIMIT:
                    self._worker_lost()
            elif time.monotonic() - started_at > START_TIMEOUT_S:
                self._worker_never_started()
            if not self._emitted:
                # A resumed client learns the state even with no heartbeat yet.
                await self._emit_state()
            ready = self.state is SessionState.READY
            await asyncio.sleep(
                READY_POLL_S if ready else self.ctx.settings.gateway_state_poll_s
            )

    def _worker_lost(self) -> None:
        logger.error(
            "%s worker heartbeat expired worker=%s", self.label, self.worker_id
        )
        self.finish(
            SessionState.FAILED,
            "The worker stopped unexpectedly (its heartbeat expired); "
            "start a new session.",
        )

    def _worker_never_started(self) -> None:
        logger.error(
            "%s no worker heartbeat within %.0f s", self.label, START_TIMEOUT_S
        )
        self.finish(
            SessionState.FAILED,
            f"No worker started within {START_TIMEOUT_S:.0f} s; try again later.",
        )

    async def _read_heartbeat(self) -> dict[str, Any] | None:
        """Return the worker's heartbeat, {} when unreadable, None when missing."""
        text = await self.ctx.redis.get(self.ctx.keys.worker(self.session_id))
        if text is None:
            return None
        try:
            heartbeat = json.loads(text)
        except ValueError:
            return {}
        return heartbeat if isinstance(heartbeat, dict) else {}

    async def _on_notification(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if method == STATE_NOTIFICATION:
            await self._apply_worker(params)
        elif method == SESSION_ENDED_NOTIFICATION:
            reason = str(params.get("reason") or "the session was ended")
            failed = params.get("state") == SessionState.FAILED.value
            self.finish(SessionState.FAILED if failed else SessionState.ENDED, reason)
        else:
            await self.ctx.sockets.emit("notification", message, self.socket_sid)

    async def _apply_worker(self, report: dict[str, Any]) -> None:
        """Apply a worker state from a notification's params or a heartbeat."""
        try:
            state = _FROM_WORKER[WorkerState(report.get("state"))]
            progress = float(report.get("progress") or 0.0)
        except (ValueError, TypeError):
            return
        message = str(report.get("message") or "")
        if report.get("worker_id"):
            self.worker_id = str(report["worker_id"])
        if state is SessionState.FAILED:
            self.finish(state, message or "The worker failed.")
        elif state is SessionState.ENDED:
            self.finish(state, message or "The worker stopped.")
        else:
            await self._apply(state, progress, message)

    async def _apply(self, state: SessionState, progress: float, message: str) -> None:
        if self.finished or _RANK[state] < _RANK[self.state]:
            return
        message = message or self._default_message(state)
        if state is SessionState.READY:
            progress = 1.0
        elif state is self.state:
            progress = max(progress, self.progress)
        if (state, progress, message) == (self.state, self.progress, self.message):
            return
        if state is not self.state:
            logger.info(
                "%s state=%s worker=%s", self.label, state.value, self.worker_id
            )
        self.state, self.progress, self.message = state, progress, message
        await self._emit_state()

    def _default_message(self, state: SessionState) -> str:
        dataset = self.record.dataset
        if state is SessionState.READY:
            return f"Ready: dataset {dataset} is loaded."
        if state is SessionState.LOADING:
            return f"Loading dataset {dataset}."
        return f"Starting a worker for dataset {dataset}."

    def finish(self, state: SessionState, message: str, forget: bool = False) -> None:
        """End the session for this client and disconnect its socket.

        The disconnect detaches the session with no grace period, so the
        orchestrator is asked to delete it. With forget, the orchestrator never
        took the session on and the gateway deletes its keys itself. The rest
        runs in its own task, which the disconnect's close of this link spares.
        """
        if self.finished:
            return
        self.finished = True
        self.state = state
        self.message = message
        logger.info("%s state=%s message=%s", self.label, state.value, message)
        self.subscribed.set()
        self.relay.release_all()
        self._finisher = asyncio.create_task(self._finish(forget))

    async def _finish(self, forget: bool) -> None:
        await self._emit_state()
        if forget:
            await self._forget()
        await self.ctx.sockets.disconnect(self.socket_sid)

    async def _forget(self) -> None:
        try:
            await self.ctx.store.forget(self.session_id)
        except (RedisError, OSError) as exc:
            logger.error(
                "%s could not delete its keys error=%s", self.label, describe_error(exc)
            )

    async def _emit_state(self) -> None:
        self._emitted = True
        if not self.closed:
            await self.ctx.sockets.emit(
                "session", self.session_event(), self.socket_sid
            )

    async def _keep_client_heartbeat(self) -> None:
        """Refresh the client key and the record while this socket is attached."""
        heartbeat = json.dumps(
            {"gateway_id": self.ctx.gateway_id, "connected_at": self._connected_at}
        )
        while not self.finished:
            try:
                holds = await self.ctx.store.refresh(
                    self.session_id, self.attachment, heartbeat
                )
            except (RedisError, OSError) as exc:
                held_back = _CLIENT_HEARTBEAT_LOG.allow()
                if held_back is not None:
                    logger.warning(
                        "%s client heartbeat failed error=%s (%d more not logged)",
                        self.label,
                        describe_error(exc),
                        held_back,
                    )
            else:
                if holds is not Holder.THIS:
                    self._lost_attachment(holds)
                    return
            await asyncio.sleep(self.ctx.settings.gateway_client_heartbeat_s)

    def _lost_attachment(self, holder: Holder) -> None:
        if holder is Holder.NONE:
            logger.warning("%s record is gone; the session was ended", self.label)
            message = (
                "This session's record is gone from Redis (it was deleted, or "
                "Redis lost its data), so the session has ended; reconnect to "
                "start a new one."
            )
        else:
            logger.info("%s now held by another connection", self.label)
            message = RESUMED_ELSEWHERE_MESSAGE
        self.finish(SessionState.ENDED, message)
