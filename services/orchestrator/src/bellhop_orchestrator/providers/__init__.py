"""Worker providers; `build_provider` picks one from the settings."""

from __future__ import annotations

from bellhop_orchestrator.metrics import Metrics
from bellhop_orchestrator.providers.base import (
    Provider,
    RunningWorker,
    WorkerExit,
    WorkerSpec,
    WorkerStatus,
)
from bellhop_orchestrator.settings import OrchestratorSettings

__all__ = [
    "Provider",
    "RunningWorker",
    "WorkerExit",
    "WorkerSpec",
    "WorkerStatus",
    "build_provider",
]


def build_provider(settings: OrchestratorSettings, metrics: Metrics) -> Provider:
    if settings.provider == "heroku":
        from bellhop_orchestrator.providers.heroku import HerokuProvider

        return HerokuProvider(settings, metrics)
    from bellhop_orchestrator.providers.local import LocalProvider

    return LocalProvider(settings)
