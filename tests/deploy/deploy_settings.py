"""The services' settings classes, seen from the environment variables they read."""

from __future__ import annotations

from pydantic_settings import BaseSettings


def settings_class_of(service: str) -> type[BaseSettings]:
    """Import a service's settings class; each service names its own."""
    if service == "worker":
        from bellhop_worker.settings import WorkerSettings

        return WorkerSettings
    if service == "orchestrator":
        from bellhop_orchestrator.settings import OrchestratorSettings

        return OrchestratorSettings
    if service == "gateway":
        from bellhop_gateway.settings import GatewaySettings

        return GatewaySettings
    raise ValueError(f"unknown service {service!r}")


def env_fields(*classes: type[BaseSettings]) -> dict[str, str]:
    """Map each environment variable the classes read to its field name."""
    fields: dict[str, str] = {}
    for cls in classes:
        for field_name, field in cls.model_fields.items():
            alias = field.validation_alias or field.alias
            fields[str(alias or field_name).upper()] = field_name
    return fields
