"""Prometheus metrics of one orchestrator process, in a registry of its own.

Counters are per process; a dashboard sums them over replicas. The active
sessions gauge is read from Redis at scrape time, so every replica reports
the same, deployment-wide number.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Starting a local process takes milliseconds, a Heroku dyno create call up to
# seconds (and longer when it backs off from rate limits).
_SPAWN_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The orchestrator's metrics; every instance has its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.active_sessions = Gauge(
            "bellhop_orchestrator_active_sessions",
            "Sessions whose record is starting or running.",
            registry=self.registry,
        )
        self.workers_started = Counter(
            "bellhop_orchestrator_workers_started",
            "Workers this process asked its provider to start.",
            ["provider"],
            registry=self.registry,
        )
        self.workers_stopped = Counter(
            "bellhop_orchestrator_workers_stopped",
            "Workers this process stopped or found gone, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.spawn_duration = Histogram(
            "bellhop_orchestrator_spawn_duration_seconds",
            "Time the provider took to accept a worker start request.",
            ["provider"],
            buckets=_SPAWN_BUCKETS_S,
            registry=self.registry,
        )
        self.provider_errors = Counter(
            "bellhop_orchestrator_provider_api_errors",
            "Failed provider calls, by operation and HTTP status (or error kind).",
            ["provider", "operation", "status"],
            registry=self.registry,
        )

    def count_provider_error(self, provider: str, operation: str, status: str) -> None:
        self.provider_errors.labels(provider, operation, status).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
