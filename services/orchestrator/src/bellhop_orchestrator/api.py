"""REST routes: /v1/sessions (bearer-token protected), health and metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from bellhop_shared.keys import is_valid_session_id
from bellhop_shared.logging import describe_error, redact
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError

from bellhop_orchestrator.errors import SessionNotFound
from bellhop_orchestrator.models import (
    CreateSessionRequest,
    ErrorResponse,
    HealthResponse,
    SessionRecord,
)
from bellhop_orchestrator.services import Services
from bellhop_orchestrator.sessions import EndReason

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False,
    description="Required when the orchestrator runs with ORCHESTRATOR_TOKEN set.",
)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_token(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Reject the call unless it carries the configured bearer token."""
    expected = services.settings.orchestrator_token
    if expected is None:
        return
    provided = credentials.credentials if credentials else ""
    if not hmac.compare_digest(provided.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            status_code=401,
            detail="Missing or invalid bearer token; send "
            "`Authorization: Bearer <ORCHESTRATOR_TOKEN>`.",
            headers={"WWW-Authenticate": 'Bearer realm="bellhop-orchestrator"'},
        )


sessions_router = APIRouter(
    prefix="/v1/sessions",
    tags=["sessions"],
    dependencies=[Depends(require_token)],
    responses=_errors(401),
)
health_router = APIRouter(tags=["health"])


@sessions_router.post(
    "",
    status_code=201,
    response_model=SessionRecord,
    responses={
        200: {"model": SessionRecord, "description": "The session already existed."},
        201: {"description": "The session was created and its worker requested."},
        **_errors(400, 409, 422, 502, 503),
    },
)
async def create_session(
    body: CreateSessionRequest, response: Response, services: ServicesDep
) -> SessionRecord:
    """Create a session and start its worker; idempotent per session_id."""
    record, created = await services.manager.create(body)
    if not created:
        response.status_code = 200
    return record


@sessions_router.get("", response_model=list[SessionRecord], responses=_errors(503))
async def list_sessions(services: ServicesDep) -> list[SessionRecord]:
    records = await services.store.list_records()
    return sorted(records, key=lambda record: record.created_at)


@sessions_router.get(
    "/{session_id}", response_model=SessionRecord, responses=_errors(404, 503)
)
async def get_session(session_id: str, services: ServicesDep) -> SessionRecord:
    record = await services.store.get(session_id) if _is_id(session_id) else None
    if record is None:
        raise SessionNotFound(f"Session {session_id!r} not found.")
    return record


@sessions_router.delete(
    "/{session_id}", response_model=SessionRecord, responses=_errors(404, 422, 503)
)
async def delete_session(
    session_id: str,
    services: ServicesDep,
    reason: Annotated[
        str | None,
        Query(max_length=200, description="Why the caller ends the session."),
    ] = None,
) -> SessionRecord:
    """Stop the worker, remove the session's keys and record, publish session.ended."""
    if not _is_id(session_id):
        raise SessionNotFound(f"Session {session_id!r} not found.")
    end_reason = EndReason("deleted", reason or "deleted through the API")
    return await services.manager.end(session_id, end_reason, remove_record=True)


@health_router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """Report that the process serves requests; checks nothing else."""
    return HealthResponse(status="ok")


@health_router.get("/readyz", response_model=HealthResponse, responses=_errors(503))
async def readyz(services: ServicesDep) -> HealthResponse:
    """Report whether Redis responds to PING, with 503 when it does not."""
    try:
        await services.store.ping()
    except (RedisError, OSError) as exc:
        raise HTTPException(
            status_code=503,
            detail=redact(
                f"Redis at {services.settings.redis_url} is unreachable ({exc}); "
                "check REDIS_URL and the Redis server."
            ),
        ) from exc
    return HealthResponse(status="ready")


@health_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text."}},
)
async def metrics(services: ServicesDep) -> Response:
    try:
        live = sum(record.is_live for record in await services.store.list_records())
        services.metrics.active_sessions.set(live)
    except RedisError as exc:
        logger.warning(
            "metrics: active sessions not refreshed, Redis error=%s",
            describe_error(exc),
        )
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")


def _is_id(session_id: str) -> bool:
    return bool(is_valid_session_id(session_id))
