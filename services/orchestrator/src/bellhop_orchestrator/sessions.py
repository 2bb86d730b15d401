"""Session lifecycle: create a session and its worker, mark it running, end it.

The API, the reaper and reconciliation all change sessions through this
module, so every path stops the worker, cleans the session's Redis keys,
publishes `session.ended` and counts the stop the same way.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

from bellhop_shared.catalog import MAX_SYNTHETIC_ROWS, DatasetSpec, resolve
from bellhop_shared.keys import new_session_id

from bellhop_orchestrator.errors import (
    LimitReached,
    ProviderError,
    SessionConflict,
    SessionNotFound,
    UnknownDataset,
)
from bellhop_orchestrator.metrics import Metrics
from bellhop_orchestrator.models import CreateSessionRequest, RecordState, SessionRecord
from bellhop_orchestrator.providers.base import Provider, WorkerSpec
from bellhop_orchestrator.settings import OrchestratorSettings
from bellhop_orchestrator.store import CreateStatus, SessionStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndReason:
    """Why a session ended: `code` labels the metric, `message` is for people."""

    code: str
    message: str


def new_worker_id() -> str:
    return f"w-{secrets.token_hex(4)}"


class SessionManager:
    """Creates and ends sessions for one deployment (one Redis key prefix)."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        store: SessionStore,
        provider: Provider,
        metrics: Metrics,
        catalog: dict[str, DatasetSpec],
    ) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.metrics = metrics
        self.catalog = catalog

    def resolve_dataset(self, name: str) -> DatasetSpec:
        spec = resolve(name, self.catalog)
        if spec is None:
            valid = ", ".join(sorted(self.catalog))
            raise UnknownDataset(
                f"Unknown dataset {name!r}. Valid names: {valid}, or "
                f"synthetic-<n>[k|m] for 1 to {MAX_SYNTHETIC_ROWS:,} generated rows "
                "(e.g. synthetic-1k)."
            )
        return spec

    async def create(self, request: CreateSessionRequest) -> tuple[SessionRecord, bool]:
        """Create the session and start its worker; return (record, created).

        A session that is already starting or running is returned unchanged
        with created=False, so concurrent calls start exactly one worker.
        """
        dataset = self.resolve_dataset(request.dataset).name
        record = self._new_record(request, dataset)
        outcome = await self.store.create(
            record, self.settings.max_workers, self.settings.max_workers_per_user
        )
        if outcome.status is CreateStatus.EXISTS and outcome.record is not None:
            return self._check_same(outcome.record, request, dataset), False
        if outcome.status is not CreateStatus.CREATED:
            raise self._limit_error(outcome.status, request.user)
        return await self._spawn(record), True

    async def mark_running(self, session_id: str) -> SessionRecord | None:
        def change(record: SessionRecord) -> SessionRecord | None:
            if record.state is not RecordState.STARTING:
                return None
            return record.with_changes(state=RecordState.RUNNING)

        updated = await self.store.update(session_id, change)
        if updated is not None:
            logger.info("session %s running worker=%s", session_id, updated.worker_id)
        return updated

    async def end(
        self,
        session_id: str,
        reason: EndReason,
        final_state: RecordState = RecordState.ENDED,
        remove_record: bool = False,
    ) -> SessionRecord:
        """Stop the worker, clean the session's keys and publish `session.ended`.

        With remove_record the record leaves the hash (DELETE semantics);
        otherwise it stays, ended, until ENDED_RETENTION_S has passed. A
        failed session keeps its worker key, whose message names the failure,
        until the key expires.
        """
        ended, was_live = await self._mark_ended(session_id, reason, final_state)
        # Published before the stop, so the client reads this reason rather
        # than the worker's own "SIGTERM" that the stop makes it send.
        if was_live or remove_record:
            await self.store.publish_ended(
                session_id, ended.ended_reason or reason.message, final_state.value
            )
        if ended.provider_ref:
            await self._stop_worker(ended, reason)
        keep_worker_key = final_state is RecordState.FAILED and not remove_record
        await self.store.delete_session_keys(session_id, keep_worker_key)
        if remove_record:
            await self.store.remove(session_id)
        if was_live:
            self.metrics.workers_stopped.labels(reason.code).inc()
            logger.info(
                "session %s ended reason=%s worker=%s state=%s",
                session_id,
                reason.code,
                ended.worker_id,
                ended.state,
            )
        return ended

    def _new_record(self, request: CreateSessionRequest, dataset: str) -> SessionRecord:
        now = time.time()
        return SessionRecord(
            session_id=request.session_id or new_session_id(),
            dataset=dataset,
            user=request.user,
            state=RecordState.STARTING,
            worker_id=new_worker_id(),
            provider=self.provider.name,
            created_at=now,
            updated_at=now,
        )

    def _check_same(
        self, existing: SessionRecord, request: CreateSessionRequest, dataset: str
    ) -> SessionRecord:
        if existing.dataset != dataset or existing.user != request.user:
            differs = "dataset" if existing.dataset != dataset else "user"
            raise SessionConflict(
                f"Session {existing.session_id!r} already exists with another "
                f"{differs}; delete it first or send the same dataset and user."
            )
        return existing

    def _limit_error(self, status: CreateStatus, user: str | None) -> LimitReached:
        retry_after_s = self.settings.limit_retry_after_s
        if status is CreateStatus.LIMIT_USER:
            limit = self.settings.max_workers_per_user
            detail = (
                f"User {user!r} already has {limit} sessions (MAX_WORKERS_PER_USER)"
            )
        else:
            limit = self.settings.max_workers
            detail = f"The orchestrator already runs {limit} workers (MAX_WORKERS)"
        logger.warning("session rejected: %s", detail)
        return LimitReached(
            f"{detail}; end a session or retry in {retry_after_s} s.",
            retry_after_s=retry_after_s,
        )

    async def _spawn(self, record: SessionRecord) -> SessionRecord:
        spec = WorkerSpec(
            record.session_id, record.dataset, record.worker_id, record.user
        )
        started = time.monotonic()
        try:
            provider_ref = await self.provider.start(spec)
        except ProviderError as exc:
            await self._fail_start(record, exc)
            raise
        self.metrics.spawn_duration.labels(self.provider.name).observe(
            time.monotonic() - started
        )
        self.metrics.workers_started.labels(self.provider.name).inc()
        return await self._attach_ref(record, provider_ref)

    async def _attach_ref(
        self, record: SessionRecord, provider_ref: str
    ) -> SessionRecord:
        def change(current: SessionRecord) -> SessionRecord | None:
            if current.worker_id != record.worker_id or not current.is_live:
                return None
            return current.with_changes(provider_ref=provider_ref)

        updated = await self.store.update(record.session_id, change)
        if updated is not None:
            return updated
        # The session was deleted while its worker started: stop that worker.
        await self.provider.stop(provider_ref, "session ended while its worker started")
        raise SessionConflict(
            f"Session {record.session_id} was deleted while its worker started; "
            "create it again."
        )

    async def _fail_start(self, record: SessionRecord, exc: ProviderError) -> None:
        logger.error(
            "session %s worker start failed provider=%s error=%s",
            record.session_id,
            self.provider.name,
            exc.detail,
        )
        reason = f"worker start failed: {exc.detail}"

        def change(current: SessionRecord) -> SessionRecord | None:
            if current.worker_id != record.worker_id:
                return None
            return current.with_changes(state=RecordState.FAILED, ended_reason=reason)

        await self.store.update(record.session_id, change)

    async def _mark_ended(
        self, session_id: str, reason: EndReason, final_state: RecordState
    ) -> tuple[SessionRecord, bool]:
        """Move a live record to final_state; return it and whether it was live."""

        def change(record: SessionRecord) -> SessionRecord | None:
            if not record.is_live:
                return None
            return record.with_changes(state=final_state, ended_reason=reason.message)

        updated = await self.store.update(session_id, change)
        if updated is not None:
            return updated, True
        current = await self.store.get(session_id)
        if current is None:
            raise SessionNotFound(f"Session {session_id!r} not found.")
        return current, False

    async def _stop_worker(self, record: SessionRecord, reason: EndReason) -> None:
        assert record.provider_ref is not None
        try:
            await self.provider.stop(record.provider_ref, reason.message)
        except ProviderError as exc:
            # Reconciliation finds the worker again and retries the stop.
            logger.error(
                "session %s worker stop failed worker=%s ref=%s error=%s",
                record.session_id,
                record.worker_id,
                record.provider_ref,
                exc.detail,
            )
