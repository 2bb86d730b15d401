"""Reconciliation racing the orchestrator that starts a worker, on a real Redis."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable, Collection

import redis.asyncio as aioredis
from bellhop_orchestrator.metrics import Metrics
from bellhop_orchestrator.models import RecordState, SessionRecord
from bellhop_orchestrator.providers.base import (
    RunningWorker,
    WorkerExit,
    WorkerSpec,
    WorkerStatus,
)
from bellhop_orchestrator.reconcile import Reconciler
from bellhop_orchestrator.sessions import SessionManager
from bellhop_orchestrator.settings import OrchestratorSettings
from bellhop_orchestrator.store import SessionStore
from bellhop_shared.catalog import load_catalog
from bellhop_shared.keys import Keys, new_session_id

REF = "pid:4242:777"


class ListedWorkers:
    """A provider that lists fixed workers and records every stop."""

    name = "local"

    def __init__(self, workers: builtins.list[RunningWorker]) -> None:
        self.workers = workers
        self.stopped: builtins.list[str] = []

    async def start(self, spec: WorkerSpec) -> str:
        raise AssertionError("reconciliation never starts a worker")

    async def stop(self, provider_ref: str, reason: str) -> None:
        self.stopped.append(provider_ref)

    async def list(self) -> builtins.list[RunningWorker]:
        return self.workers

    async def poll(self, provider_ref: str) -> WorkerStatus:
        return WorkerStatus.RUNNING

    async def find_exited(
        self, provider_refs: Collection[str]
    ) -> dict[str, WorkerExit]:
        return {}

    async def aclose(self) -> None:
        return None


class StarterWinsRace(SessionStore):
    """Writes the starter's ref just before the reconciler's first update."""

    def __init__(self, client: aioredis.Redis, keys: Keys, ref: str) -> None:
        super().__init__(client, keys)
        self._ref: str | None = ref

    async def update(
        self, session_id: str, change: Callable[[SessionRecord], SessionRecord | None]
    ) -> SessionRecord | None:
        ref, self._ref = self._ref, None
        if ref is not None:
            await super().update(session_id, lambda r: r.with_changes(provider_ref=ref))
        return await super().update(session_id, change)


def test_reconcile_keeps_late_ref_worker(redis_url: str) -> None:
    async def scenario() -> tuple[builtins.list[str], SessionRecord | None]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        keys = Keys(prefix=f"race-{new_session_id()[:8]}:")
        store = StarterWinsRace(client, keys, REF)
        session_id = new_session_id()
        now = time.time()
        record = SessionRecord(
            session_id=session_id,
            dataset="synthetic-1k",
            state=RecordState.STARTING,
            worker_id="w-race",
            provider="local",
            created_at=now,
            updated_at=now,
        )
        await client.hset(keys.sessions, session_id, record.to_json())
        provider = ListedWorkers([RunningWorker(REF, session_id, "w-race")])
        settings = OrchestratorSettings(REDIS_URL=redis_url)
        manager = SessionManager(
            settings, store, provider, Metrics(), load_catalog(None)
        )

        await Reconciler(manager, store, provider).run()

        current = await store.get(session_id)
        await client.aclose()
        return provider.stopped, current

    stopped, current = asyncio.run(scenario())

    assert stopped == []
    assert current is not None
    assert current.provider_ref == REF
    assert current.state is RecordState.STARTING
