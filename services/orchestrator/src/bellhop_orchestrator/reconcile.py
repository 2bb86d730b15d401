"""Reconciliation: compare what the provider runs with the session records.

- A worker whose live record names it is known; nothing to do.
- A worker whose live record has no provider_ref yet (the orchestrator that
  started it died before writing it back) is adopted: its ref is written.
- Any other worker (no record, an ended record, or a record that names
  another worker) is an orphan and is stopped.
- A live record whose worker the provider no longer has is ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from bellhop_orchestrator.errors import ProviderError
from bellhop_orchestrator.models import SessionRecord
from bellhop_orchestrator.providers.base import Provider, RunningWorker, WorkerStatus
from bellhop_orchestrator.sessions import EndReason, SessionManager
from bellhop_orchestrator.store import SessionStore

logger = logging.getLogger(__name__)

# A record younger than this may belong to a worker the provider does not list
# yet (Heroku's API can lag right after a create).
_NEW_RECORD_GRACE_S = 30.0
# A session ended less than this long ago may still be stopping its worker (a
# dyno gets 30 s between SIGTERM and SIGKILL), so that worker is no orphan yet.
_STOPPING_GRACE_S = 60.0

ORPHAN = EndReason("orphan", "worker unknown to the orchestrator")
DUPLICATE = EndReason("duplicate", "a second worker for a session that has one")
WORKER_MISSING = EndReason("worker_missing", "the provider no longer runs the worker")


@dataclass
class ReconcileReport:
    known: int = 0
    adopted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)


class Reconciler:
    """Runs one reconciliation pass at a time."""

    def __init__(
        self, manager: SessionManager, store: SessionStore, provider: Provider
    ) -> None:
        self._manager = manager
        self._store = store
        self._provider = provider
        grace_s = manager.settings.worker_start_timeout_s
        self._record_grace_s = min(_NEW_RECORD_GRACE_S, grace_s)

    async def run(self) -> ReconcileReport | None:
        """Reconcile once; return None when the provider could not list workers."""
        try:
            workers = await self._provider.list()
        except ProviderError as exc:
            logger.error(
                "reconcile skipped: listing workers failed error=%s", exc.detail
            )
            return None
        # Read records after listing: every listed worker's record was
        # written before the worker started, so it is in this read.
        records = {
            record.session_id: record for record in await self._store.list_records()
        }
        report = ReconcileReport()
        orphans = [w for w in workers if not await self._claim(w, records, report)]
        await asyncio.gather(*(self._stop_orphan(w, records, report) for w in orphans))
        listed = {worker.provider_ref for worker in workers}
        for record in records.values():
            await self._end_if_missing(record, listed, report)
        self._log(report, len(workers))
        return report

    async def _claim(
        self,
        worker: RunningWorker,
        records: dict[str, SessionRecord],
        report: ReconcileReport,
    ) -> bool:
        """Return True when a live record owns the worker, adopting it if needed."""
        record = records.get(worker.session_id)
        if record is None:
            return False
        if not record.is_live:
            return _is_stopping(record, worker)
        if record.provider_ref == worker.provider_ref:
            report.known += 1
            return True
        if record.provider_ref is None and worker.worker_id in (None, record.worker_id):
            return await self._adopt(record, worker, report)
        return False

    async def _adopt(
        self, record: SessionRecord, worker: RunningWorker, report: ReconcileReport
    ) -> bool:
        def change(current: SessionRecord) -> SessionRecord | None:
            if current.worker_id != record.worker_id or current.provider_ref:
                return None
            return current.with_changes(provider_ref=worker.provider_ref)

        adopted = await self._store.update(record.session_id, change)
        if adopted is None:
            # The orchestrator that started the worker may have written its
            # ref between our read and this update, and then the worker is known.
            current = await self._store.get(record.session_id)
            if (
                current is not None
                and current.is_live
                and current.provider_ref == worker.provider_ref
            ):
                report.known += 1
                return True
            return False
        logger.info(
            "session %s adopted worker ref=%s %s",
            record.session_id,
            worker.provider_ref,
            worker.detail,
        )
        report.adopted.append(worker.provider_ref)
        return True

    async def _stop_orphan(
        self,
        worker: RunningWorker,
        records: dict[str, SessionRecord],
        report: ReconcileReport,
    ) -> None:
        record = records.get(worker.session_id)
        reason = DUPLICATE if record is not None and record.is_live else ORPHAN
        logger.warning(
            "session %s worker ref=%s is orphaned; stopping it reason=%s %s",
            worker.session_id,
            worker.provider_ref,
            reason.code,
            worker.detail,
        )
        try:
            await self._provider.stop(worker.provider_ref, reason.message)
        except ProviderError as exc:
            logger.error(
                "worker ref=%s stop failed error=%s", worker.provider_ref, exc.detail
            )
            return
        self._manager.metrics.workers_stopped.labels(reason.code).inc()
        report.stopped.append(worker.provider_ref)

    async def _end_if_missing(
        self, record: SessionRecord, listed: set[str], report: ReconcileReport
    ) -> None:
        ref = record.provider_ref
        if not record.is_live or ref is None or ref in listed:
            return
        if time.time() - record.created_at < self._record_grace_s:
            return
        # Confirm with the provider: a list can lag behind a fresh create.
        if await self._provider.poll(ref) is not WorkerStatus.EXITED:
            return
        await self._manager.end(record.session_id, WORKER_MISSING)
        report.ended.append(record.session_id)

    def _log(self, report: ReconcileReport, listed: int) -> None:
        changed = report.adopted or report.stopped or report.ended
        logger.log(
            logging.INFO if changed else logging.DEBUG,
            "reconcile done listed=%d known=%d adopted=%d stopped=%d ended=%d",
            listed,
            report.known,
            len(report.adopted),
            len(report.stopped),
            len(report.ended),
        )


def _is_stopping(record: SessionRecord, worker: RunningWorker) -> bool:
    """Return True when an ended record's own worker may still be shutting down."""
    recent = time.time() - record.updated_at < _STOPPING_GRACE_S
    return recent and record.provider_ref == worker.provider_ref
