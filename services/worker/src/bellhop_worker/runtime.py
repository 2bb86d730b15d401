"""The worker's life: start, load the dataset, serve the queue, exit.

    starting -> loading (progress) -> ready -> terminating   exit 0
                        \\-> failed                            exit 2 (dataset)
    any state -> failed                                       exit 1 (bug, Redis gone)

Every state change is written to the heartbeat key and published on the
results channel as a `worker.state` notification. Signal handlers only record
the signal, and interrupt the queue's BLMOVE when the worker is waiting for a
request. The serve loop finishes the request it is computing. The rest of the
batch stays parked in inflight (see bellhop_worker.queue), where the next
worker for the session claims it.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass
from enum import IntEnum
from types import FrameType
from typing import Any

from bellhop_shared.catalog import DatasetSpec, load_catalog, resolve
from bellhop_shared.jsonrpc import notification
from bellhop_shared.states import STATE_NOTIFICATION, WorkerState

from bellhop_worker.dispatch import Dispatcher
from bellhop_worker.engine import Engine
from bellhop_worker.errors import DatasetError
from bellhop_worker.heartbeat import Heartbeat
from bellhop_worker.methods import build_methods
from bellhop_worker.progress import LoadCancelled, ProgressPublisher
from bellhop_worker.queue import RequestQueue, connect_raw
from bellhop_worker.retry import RETRYABLE_ERRORS, RedisRetry, RedisUnavailable
from bellhop_worker.settings import WorkerSettings
from bellhop_worker.status import WorkerStatus

logger = logging.getLogger(__name__)


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    DATASET_FAILED = 2


@dataclass(frozen=True)
class Assignment:
    """The session, dataset and user that the orchestrator started this worker for."""

    session_id: str
    dataset: str
    user: str | None = None


class WorkerRuntime:
    """One worker process serving one session."""

    def __init__(self, settings: WorkerSettings, assignment: Assignment) -> None:
        self._settings = settings
        self._assignment = assignment
        keys = settings.keys
        self._results_channel = keys.results(assignment.session_id)
        self._client_key = keys.client(assignment.session_id)
        self.status = WorkerStatus(
            settings.worker_id, assignment.session_id, assignment.dataset
        )
        # Written by the signal handler, so plain attributes and no locks.
        self._stop_reason = ""
        self._signalled = False
        self._last_activity = time.monotonic()
        self._redis = connect_raw(settings.redis_url)
        # The queue has a client of its own because a signal may interrupt its
        # BLMOVE and close that client; state reports use self._redis.
        self._queue_redis = connect_raw(settings.redis_url)
        self._retry = RedisRetry(settings.redis_give_up_s, self._is_signalled)
        self._queue = RequestQueue(
            self._queue_redis, keys, assignment.session_id, settings.max_batch
        )
        self._heartbeat = Heartbeat(
            self._redis,
            keys.worker(assignment.session_id),
            self.status,
            settings.heartbeat_interval_s,
            settings.heartbeat_ttl_s,
        )

    @property
    def worker_id(self) -> str:
        return self._settings.worker_id

    def run(self) -> ExitCode:
        """Run the worker to its end and return the process exit status."""
        self._install_signal_handlers()
        logger.info(
            "worker %s started session=%s dataset=%s",
            self.worker_id,
            self._assignment.session_id,
            self._assignment.dataset,
        )
        exit_code = self._run_guarded()
        logger.info(
            "worker %s exited exit_code=%d reason=%s uptime_s=%.1f",
            self.worker_id,
            exit_code,
            self._stop_reason or "error",
            self.status.uptime_s,
        )
        self._queue_redis.close()
        self._redis.close()
        return exit_code

    def request_stop(self, reason: str) -> None:
        """Make the serve loop exit after the current batch; the first reason wins."""
        if not self._stop_reason:
            self._stop_reason = reason

    def _run_guarded(self) -> ExitCode:
        try:
            return self._run_phases()
        except RedisUnavailable as exc:
            self._stop_reason = self._stop_reason or "redis unavailable"
            logger.error("worker %s cannot reach Redis: %s", self.worker_id, exc)
        except Exception as exc:
            logger.exception("worker %s failed unexpectedly", self.worker_id)
            self._fail_quietly(f"Internal error in the worker: {exc!r}.")
        finally:
            self._heartbeat.stop()
        return ExitCode.ERROR

    def _run_phases(self) -> ExitCode:
        self._report(WorkerState.STARTING, 0.0, "")
        self._heartbeat.start()
        try:
            engine = self._load()
        except DatasetError as exc:
            if not self._signalled:
                return self._fail(exc.message)
            engine = None
        if engine is None or self._signalled:
            return self._shut_down()
        self._report(WorkerState.READY, 1.0, "")
        self._serve(engine)
        return self._shut_down()

    def _load(self) -> Engine | None:
        """Load the dataset; return None when a signal stopped the load."""
        spec = self._resolve_spec()
        self._report(WorkerState.LOADING, 0.0, f"loading {spec.name}")
        progress = ProgressPublisher(self._publish_progress, self._is_signalled)
        try:
            return Engine.load(spec, self._assignment.user, progress)
        except LoadCancelled:
            return None

    def _resolve_spec(self) -> DatasetSpec:
        try:
            catalog = load_catalog(self._settings.catalog_path)
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc
        spec = resolve(self._assignment.dataset, catalog)
        if spec is None:
            names = ", ".join(sorted(catalog))
            raise DatasetError(
                f"Unknown dataset {self._assignment.dataset!r}; valid names are "
                f"{names} and synthetic-<n>[k|m]. Pick one of them."
            )
        return spec

    def _serve(self, engine: Engine) -> None:
        dispatcher = Dispatcher(
            build_methods(engine, self.status, self._on_terminate),
            on_request=self.status.count_request,
        )
        self._last_activity = time.monotonic()
        batch: list[bytes] = []
        while not self._stop_reason:
            if batch:
                batch = self._process(batch, dispatcher)
            elif self._is_idle():
                idle_s = time.monotonic() - self._last_activity
                logger.info("worker %s idle idle_s=%.0f", self.worker_id, idle_s)
                self.request_stop(f"idle for {idle_s:.0f} s")
            else:
                batch = self._retry.call(
                    "claim", self._queue.claim, self._block_timeout_s()
                )

    def _process(self, batch: list[bytes], dispatcher: Dispatcher) -> list[bytes]:
        """Dispatch a batch oldest first and return the next one ([] for none).

        After a signal, leave the rest of the batch parked.
        """
        last = len(batch) - 1
        for done, item in enumerate(batch):
            if self._signalled:
                logger.info(
                    "worker %s parked unprocessed requests in inflight count=%d",
                    self.worker_id,
                    len(batch) - done,
                )
                return []
            response = dispatcher.handle(item)
            self._last_activity = time.monotonic()
            if done == last and not self._stop_reason:
                # The last acknowledgement also waits for the next batch.
                return self._retry.call(
                    "acknowledge and claim",
                    self._queue.acknowledge_and_claim,
                    item,
                    response,
                    self._block_timeout_s(),
                )
            self._retry.call("acknowledge", self._queue.acknowledge, item, response)
        return []

    def _block_timeout_s(self) -> float:
        """Return the next BLMOVE's timeout, cut short to end at the idle timeout."""
        idle_s = time.monotonic() - self._last_activity
        until_idle_s = self._settings.idle_timeout_s - idle_s
        if until_idle_s <= 0:
            return self._settings.block_timeout_s
        return min(self._settings.block_timeout_s, max(until_idle_s + 0.05, 0.1))

    def _is_idle(self) -> bool:
        """Return True after idle_timeout_s without requests, client or inflight."""
        idle_s = time.monotonic() - self._last_activity
        if idle_s < self._settings.idle_timeout_s:
            return False
        if self._retry.call(
            "client check", lambda: self._redis.exists(self._client_key)
        ):
            return False
        return self._retry.call("inflight check", self._queue.inflight_length) == 0

    def _on_terminate(self) -> None:
        logger.info("worker %s received terminate", self.worker_id)
        self.request_stop("terminate requested")

    def _shut_down(self) -> ExitCode:
        if self._signalled:
            logger.info("worker %s stopping on %s", self.worker_id, self._stop_reason)
        self._heartbeat.stop()
        self._report(WorkerState.TERMINATING, self.status.progress, self._stop_reason)
        self._retry.call("heartbeat delete", self._heartbeat.delete)
        return ExitCode.OK

    def _fail(self, message: str) -> ExitCode:
        """Report a dataset failure; the heartbeat key keeps it until its TTL."""
        self._stop_reason = "dataset failed"
        logger.error("worker %s dataset failed: %s", self.worker_id, message)
        self._heartbeat.stop()
        self._report(WorkerState.FAILED, self.status.progress, message)
        return ExitCode.DATASET_FAILED

    def _fail_quietly(self, message: str) -> None:
        """Report an unexpected failure if Redis is reachable; log any error instead."""
        self._stop_reason = self._stop_reason or "internal error"
        self._heartbeat.stop()
        try:
            self.status.set_state(WorkerState.FAILED, self.status.progress, message)
            self._heartbeat.write()
            self._publish(notification(STATE_NOTIFICATION, self.status.state_params()))
        except Exception as exc:
            logger.warning(
                "worker %s could not report failure: %s", self.worker_id, exc
            )

    def _report(self, state: WorkerState, progress: float, message: str) -> None:
        """Record a state change, write the heartbeat and publish the notification."""
        self.status.set_state(state, progress, message)
        logger.info(
            "worker %s state=%s progress=%.2f message=%s",
            self.worker_id,
            state.value,
            progress,
            message or "-",
        )
        self._retry.call("heartbeat", self._heartbeat.write)
        params = self.status.state_params()
        self._retry.call(
            "publish state",
            lambda: self._publish(notification(STATE_NOTIFICATION, params)),
        )

    def _publish_progress(self, fraction: float) -> None:
        """Publish loading progress once; a Redis error only costs this update."""
        self.status.set_progress(fraction)
        logger.debug("worker %s loading progress=%.2f", self.worker_id, fraction)
        params = self.status.state_params()
        try:
            self._publish(notification(STATE_NOTIFICATION, params))
            self._heartbeat.write()
        except RETRYABLE_ERRORS as exc:
            logger.warning("worker %s progress not published: %s", self.worker_id, exc)

    def _publish(self, message: dict[str, Any]) -> None:
        self._redis.publish(self._results_channel, json.dumps(message))

    def _is_signalled(self) -> bool:
        return self._signalled

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Record the signal: the loop acts on it between requests. Heroku
        # may send SIGTERM to every process of a dyno more than once, so later
        # SIGTERMs are ignored and SIGKILL stays the platform's last word. A
        # second Ctrl-C gets the default action, so a stuck worker can still be
        # stopped from a terminal; its unanswered requests stay parked in inflight.
        # The exception that interrupt_wait may raise ends a BLMOVE, so the
        # handlers are changed before it is called.
        self._signalled = True
        self.request_stop(signal.Signals(signum).name)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        self._queue.interrupt_wait()
