"""The FastAPI application: lifespan (reaper task), routes and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from bellhop_shared.logging import describe_error
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from bellhop_orchestrator.api import health_router, sessions_router
from bellhop_orchestrator.errors import OrchestratorError
from bellhop_orchestrator.providers import Provider
from bellhop_orchestrator.services import Services, build_services
from bellhop_orchestrator.settings import OrchestratorSettings, get_settings

logger = logging.getLogger(__name__)

_REDIS_RETRY_AFTER_S = 5
# `synthetic-<n>[k|m]` names of 1 to MAX_SYNTHETIC_ROWS (20,000,000) rows
# resolve without a catalog entry; this pattern admits exactly those.
SYNTHETIC_NAME_PATTERN = (
    r"^synthetic-([1-9][0-9]{0,6}|1[0-9]{7}|20000000"
    r"|[1-9][0-9]{0,3}k|1[0-9]{4}k|20000k"
    r"|[1-9]m|1[0-9]m|20m)$"
)


def create_app(
    settings: OrchestratorSettings | None = None, provider: Provider | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, provider)
        app.state.services = services
        reaper_task = _start_reaper(services)
        logger.info(
            "orchestrator started provider=%s reaper=%s",
            services.provider.name,
            "on" if reaper_task else "off",
        )
        yield
        await _stop_reaper(reaper_task)
        await services.aclose()
        logger.info("orchestrator stopped")

    app = FastAPI(
        title="Bellhop orchestrator",
        version="1",
        description="Provisions one worker per session and cleans up after it.",
        lifespan=lifespan,
    )
    app.include_router(sessions_router)
    app.include_router(health_router)
    _add_error_handlers(app)
    _document_datasets(app)
    return app


def _document_datasets(app: FastAPI) -> None:
    """Name the valid datasets in the schema: the catalog and synthetic sizes."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        services: Services | None = getattr(app.state, "services", None)
        if services is not None:
            request = schema["components"]["schemas"]["CreateSessionRequest"]
            request["properties"]["dataset"]["anyOf"] = [
                {"enum": sorted(services.manager.catalog)},
                {"pattern": SYNTHETIC_NAME_PATTERN},
            ]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _start_reaper(services: Services) -> asyncio.Task[None] | None:
    if not services.settings.reaper_enabled:
        return None
    return asyncio.create_task(services.reaper.run(), name="reaper")


async def _stop_reaper(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrchestratorError, _orchestrator_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _orchestrator_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchestratorError)
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_describe(error, request) for error in exc.errors()]
    summary = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
    body = {"detail": f"Invalid request: {summary}.", "errors": errors}
    return JSONResponse(jsonable_encoder(body), 422)


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "request %s %s failed: Redis error=%s",
        request.method,
        request.url.path,
        describe_error(exc),
    )
    detail = "Redis is unreachable; retry shortly."
    headers = {"Retry-After": str(_REDIS_RETRY_AFTER_S)}
    return JSONResponse({"detail": detail}, 503, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception(
        "request %s %s failed unexpectedly", request.method, request.url.path
    )
    detail = "Internal error in the orchestrator; its log has the details."
    return JSONResponse({"detail": detail}, 500)


def _describe(error: Any, request: Request) -> dict[str, str]:
    location = ".".join(str(part) for part in error.get("loc", ()))
    kind = str(error.get("type", ""))
    message = str(error.get("msg", ""))
    if kind == "json_invalid":
        # FastAPI puts the character position after "body" in the location.
        position = error.get("loc", ("body", "?"))[-1]
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        location = "body"
        message = f"the body is not valid JSON: {reason} at character {position}"
    elif location == "body" and not _is_json(request):
        content_type = request.headers.get("content-type") or "none"
        message = (
            f"send the body as a JSON object with Content-Type: application/json "
            f"(the request's Content-Type was {content_type})"
        )
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return {"location": location, "message": message, "type": kind}


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "application/json"
