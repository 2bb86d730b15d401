"""The objects one orchestrator process wires together at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from bellhop_shared.catalog import load_catalog
from bellhop_shared.logging import describe_error
from bellhop_shared.redis_client import connect_async
from redis.exceptions import RedisError

from bellhop_orchestrator.leader import LeaderLock
from bellhop_orchestrator.metrics import Metrics
from bellhop_orchestrator.providers import Provider, build_provider
from bellhop_orchestrator.reaper import Reaper
from bellhop_orchestrator.reconcile import Reconciler
from bellhop_orchestrator.sessions import SessionManager
from bellhop_orchestrator.settings import OrchestratorSettings
from bellhop_orchestrator.store import SessionStore

logger = logging.getLogger(__name__)

# The lock's expiry, in reaper intervals: a missed renewal or two is tolerated.
_LEADER_TTL_INTERVALS = 3


def leader_key(settings: OrchestratorSettings) -> str:
    """Return the reaper's leader-lock key (orchestrator-internal, not protocol)."""
    return f"{settings.key_prefix}orchestrator:reaper-leader"


@dataclass
class Services:
    settings: OrchestratorSettings
    redis: aioredis.Redis
    store: SessionStore
    provider: Provider
    metrics: Metrics
    manager: SessionManager
    reconciler: Reconciler
    reaper: Reaper
    leader: LeaderLock

    async def aclose(self) -> None:
        try:
            await self.leader.release()
        except RedisError as exc:
            # The lock expires by itself; another replica takes over then.
            logger.warning(
                "reaper lock not released: Redis error=%s", describe_error(exc)
            )
        await self.provider.aclose()
        await self.redis.aclose()


def build_services(
    settings: OrchestratorSettings, provider: Provider | None = None
) -> Services:
    """Connect (lazily) to Redis and build the provider, store and reaper."""
    client = connect_async(settings.redis_url)
    metrics = Metrics()
    store = SessionStore(client, settings.keys)
    provider = provider or build_provider(settings, metrics)
    catalog = load_catalog(settings.catalog_path)
    manager = SessionManager(settings, store, provider, metrics, catalog)
    reconciler = Reconciler(manager, store, provider)
    ttl_s = settings.reaper_interval_s * _LEADER_TTL_INTERVALS
    leader = LeaderLock(client, leader_key(settings), ttl_s)
    reaper = Reaper(settings, store, manager, reconciler, leader)
    return Services(
        settings, client, store, provider, metrics, manager, reconciler, reaper, leader
    )
