"""The reaper: ends sessions whose worker or client is gone, on the leader only.

Each tick, on the replica that holds the leader lock:
- a session older than WORKER_TIME_TO_LIVE_S is ended;
- a session whose worker the provider reports gone is ended at once: as
  `worker_exited` after the worker's own clean exit, and as failed with
  `worker_crashed` after a crash or kill (see `explain_exit`);
- a starting session with no worker heartbeat after WORKER_START_TIMEOUT_S
  is ended, as is a running one whose heartbeat key has been gone for
  WORKER_HEARTBEAT_GRACE_S;
- a worker heartbeat in state `failed` marks the session failed;
- a session with no client heartbeat for GATEWAY_GRACE_S is ended (its
  gateway is gone);
- ended and failed records are deleted after ENDED_RETENTION_S;
- every RECONCILE_INTERVAL_S, after these checks, provider workers are
  reconciled with records.

"Gone since" times are kept in memory, so a new leader starts counting anew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bellhop_shared.logging import describe_error
from bellhop_shared.states import WorkerState
from redis.exceptions import RedisError

from bellhop_orchestrator.errors import OrchestratorError, ProviderError
from bellhop_orchestrator.leader import LeaderLock
from bellhop_orchestrator.models import RecordState, SessionRecord
from bellhop_orchestrator.providers.base import WorkerExit
from bellhop_orchestrator.reconcile import Reconciler
from bellhop_orchestrator.sessions import EndReason, SessionManager
from bellhop_orchestrator.settings import OrchestratorSettings
from bellhop_orchestrator.store import SessionStore, StoredRecord

logger = logging.getLogger(__name__)

HEARTBEAT_EXPIRED_MESSAGE = "the worker stopped sending heartbeats (it exited or hung)"
# Metric reasons of a session whose worker exited while the session was live.
WORKER_EXITED = "worker_exited"
WORKER_CRASHED = "worker_crashed"
# An uncertain exit (a Heroku dyno missing from the API) is trusted only for
# a session this old. A dyno that another replica created moments ago may
# not be listed yet, and a false exit would fail a healthy session.
UNCERTAIN_EXIT_MIN_AGE_S = 30.0
# After a Redis outage the loop waits up to this long between attempts.
_MAX_ERROR_DELAY_S = 30.0


class Reaper:
    """Watches heartbeats and ends abandoned sessions; see the module docstring."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        store: SessionStore,
        manager: SessionManager,
        reconciler: Reconciler,
        leader: LeaderLock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._manager = manager
        self._reconciler = reconciler
        self._leader = leader
        self._gone_since: dict[tuple[str, str], float] = {}
        # The heartbeat seen when an uncertain exit was first reported for a
        # session too young to trust it. Classifying the exit later by the
        # key then would mistake a crash for a clean exit once the key's TTL
        # has run out.
        self._exit_heartbeat: dict[str, dict[str, Any] | None] = {}
        self._last_reconcile = float("-inf")

    async def run(self) -> None:
        """Reconcile once, then tick forever; a failed tick is retried later.

        Every replica reconciles once at start, leader or not, so workers that
        a crashed orchestrator left behind are adopted or stopped at once
        instead of after its leader lock expires. Reconciliation only changes
        records by compare-and-set, so two replicas doing it at once is safe.
        """
        await self._reconcile_at_start()
        delay_s = self._settings.reaper_interval_s
        while True:
            await asyncio.sleep(delay_s)
            try:
                await self.tick()
                delay_s = self._settings.reaper_interval_s
            except RedisError as exc:
                delay_s = min(delay_s * 2, _MAX_ERROR_DELAY_S)
                logger.warning(
                    "reaper tick failed: Redis error=%s; retrying in %.1f s",
                    describe_error(exc),
                    delay_s,
                )
            except Exception:
                logger.exception("reaper tick failed unexpectedly; retrying")

    async def _reconcile_at_start(self) -> None:
        try:
            await self._reconciler.run()
            self._last_reconcile = time.monotonic()
        except RedisError as exc:
            logger.warning(
                "reconcile at start failed: Redis error=%s", describe_error(exc)
            )

    async def tick(self) -> None:
        if not await self._leader.hold():
            self._gone_since.clear()
            self._exit_heartbeat.clear()
            return
        records = await self._store.list_stored()
        exits = await self._find_exits(records)
        for stored in records:
            await self._check_guarded(stored, exits)
        # Reconciliation comes after the checks, so a worker that died since
        # the last tick ends its session with its exit, not `worker_missing`.
        now = time.monotonic()
        if now - self._last_reconcile >= self._settings.reconcile_interval_s:
            self._last_reconcile = now
            await self._reconciler.run()

    async def _find_exits(self, records: list[StoredRecord]) -> dict[str, WorkerExit]:
        """Ask the provider which workers of live records are gone, by ref."""
        provider = self._manager.provider
        refs = [
            stored.record.provider_ref
            for stored in records
            if stored.record.is_live
            and stored.record.provider_ref
            and stored.record.provider == provider.name
        ]
        if not refs:
            return {}
        # One tick at most, because a provider that backs off (Heroku returns
        # 429 when rate limited) must not hold the tick past the leader lock,
        # which lives 3 ticks.
        timeout_s = self._settings.reaper_interval_s
        try:
            async with asyncio.timeout(timeout_s):
                return await provider.find_exited(refs)
        except ProviderError as exc:
            logger.warning(
                "worker exit check failed error=%s; heartbeats still end sessions",
                exc.detail,
            )
        except TimeoutError:
            logger.warning(
                "worker exit check timed out after %g s; heartbeats still end sessions",
                timeout_s,
            )
        return {}

    async def _check_guarded(
        self, stored: StoredRecord, exits: dict[str, WorkerExit]
    ) -> None:
        try:
            await self._check(stored, exits)
        except OrchestratorError as exc:
            logger.error(
                "session %s reaper check failed error=%s",
                stored.record.session_id,
                exc.detail,
            )

    async def _check(self, stored: StoredRecord, exits: dict[str, WorkerExit]) -> None:
        record = stored.record
        if not record.is_live:
            # It may have ended elsewhere (DELETE, another replica, a failed
            # heartbeat) while an uncertain exit was waiting.
            self._exit_heartbeat.pop(record.session_id, None)
            await self._purge_if_old(stored)
            return
        ttl_s = self._settings.worker_time_to_live_s
        if record.age_s() > ttl_s:
            message = f"reached its time to live of {ttl_s} s"
            await self._end(record, EndReason("time_to_live", message))
            return
        heartbeat = await self._store.worker_heartbeat(record.session_id)
        worker_exit = exits.get(record.provider_ref) if record.provider_ref else None
        if worker_exit is None or worker_exit.certain:
            self._exit_heartbeat.pop(record.session_id, None)
        elif record.age_s() < UNCERTAIN_EXIT_MIN_AGE_S:
            self._exit_heartbeat.setdefault(record.session_id, heartbeat)
            worker_exit = None
        else:
            heartbeat = self._exit_heartbeat.pop(record.session_id, heartbeat)
        # A worker that reported a failure before it exited ends as
        # `worker_failed` below, with its own message.
        if worker_exit is not None and not _reports_failure(heartbeat):
            reason, final_state = explain_exit(record, heartbeat, worker_exit)
            await self._end(record, reason, final_state)
            return
        if heartbeat is None:
            ended = await self._check_missing_worker(record)
        else:
            ended = await self._check_heartbeat(record, heartbeat)
        if not ended:
            await self._check_client(record)

    async def _check_heartbeat(
        self, record: SessionRecord, heartbeat: dict[str, Any]
    ) -> bool:
        self._gone_since.pop((record.session_id, "worker"), None)
        if heartbeat.get("state") == WorkerState.FAILED:
            message = str(heartbeat.get("message") or "the worker reported a failure")
            reason = EndReason("worker_failed", message)
            await self._manager.end(record.session_id, reason, RecordState.FAILED)
            return True
        if record.state is RecordState.STARTING:
            await self._manager.mark_running(record.session_id)
        return False

    async def _check_missing_worker(self, record: SessionRecord) -> bool:
        if record.state is RecordState.STARTING:
            timeout_s = self._settings.worker_start_timeout_s
            if record.age_s() <= timeout_s:
                return False
            message = (
                f"the worker wrote no heartbeat within {timeout_s:g} s of its start"
            )
            await self._end(record, EndReason("start_timeout", message))
            return True
        grace_s = self._settings.worker_heartbeat_grace_s
        if self._gone_for_s(record.session_id, "worker") < grace_s:
            return False
        await self._end(
            record, EndReason("heartbeat_expired", HEARTBEAT_EXPIRED_MESSAGE)
        )
        return True

    async def _check_client(self, record: SessionRecord) -> None:
        if await self._store.has_client(record.session_id):
            self._gone_since.pop((record.session_id, "client"), None)
            return
        grace_s = self._settings.gateway_grace_s
        if self._gone_for_s(record.session_id, "client") < grace_s:
            return
        message = f"no client heartbeat for {grace_s:g} s (its gateway is gone)"
        await self._end(record, EndReason("client_gone", message))

    def _gone_for_s(self, session_id: str, what: str) -> float:
        """Return how long `what` has been missing, counting from first notice."""
        now = time.monotonic()
        return now - self._gone_since.setdefault((session_id, what), now)

    async def _end(
        self,
        record: SessionRecord,
        reason: EndReason,
        final_state: RecordState = RecordState.ENDED,
    ) -> None:
        self._gone_since.pop((record.session_id, "worker"), None)
        self._gone_since.pop((record.session_id, "client"), None)
        self._exit_heartbeat.pop(record.session_id, None)
        logger.log(
            logging.WARNING if final_state is RecordState.FAILED else logging.INFO,
            "session %s ending reason=%s detail=%r",
            record.session_id,
            reason.code,
            reason.message,
        )
        await self._manager.end(record.session_id, reason, final_state)

    async def _purge_if_old(self, stored: StoredRecord) -> None:
        age_s = time.time() - stored.record.updated_at
        if age_s < self._settings.ended_retention_s:
            return
        if await self._store.remove_if_unchanged(stored):
            logger.debug(
                "session %s record purged state=%s",
                stored.record.session_id,
                stored.record.state,
            )


def explain_exit(
    record: SessionRecord, heartbeat: dict[str, Any] | None, worker_exit: WorkerExit
) -> tuple[EndReason, RecordState]:
    """Return the end reason and final state of a live session whose worker exited.

    The worker exits with status 0 only after `terminate`, when idle, or on
    SIGTERM or SIGINT, and it deletes its heartbeat key just before. When the provider
    cannot tell the status, a heartbeat key that is still there (and not in
    state `terminating`), or a record that never saw one, marks a crash.
    """
    exit_description = worker_exit.describe()
    if worker_exit.exit_code is not None:
        is_clean = worker_exit.exit_code == 0
    else:
        is_clean = record.state is RecordState.RUNNING and (
            heartbeat is None or heartbeat.get("state") == WorkerState.TERMINATING
        )
    if is_clean:
        message = f"the worker exited by itself ({exit_description})"
        return EndReason(WORKER_EXITED, message), RecordState.ENDED
    message = f"the worker stopped unexpectedly ({exit_description})"
    return EndReason(WORKER_CRASHED, message), RecordState.FAILED


def _reports_failure(heartbeat: dict[str, Any] | None) -> bool:
    return heartbeat is not None and heartbeat.get("state") == WorkerState.FAILED
