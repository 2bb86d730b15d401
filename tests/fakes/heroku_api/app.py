"""Routes of the fake Heroku Platform API and its /_fake admin endpoints."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from .dynos import Dyno, DynoRunner
from .ranges import RangeError, apply_range, parse_range
from .settings import FakeSettings

logger = logging.getLogger(__name__)

_ACCEPT = re.compile(r"^application/vnd\.heroku\+json;\s*version=3(\.[\w-]+)?$")
_ENV_KEY = re.compile(r"^\w+$")
_CREATE_FIELDS = {
    "command",
    "attach",
    "env",
    "force_no_tty",
    "size",
    "type",
    "time_to_live",
}
_MAX_TIME_TO_LIVE_S = 86_400
_RATE_LIMIT_MESSAGE = (
    "Your account reached the API rate limit\n"
    "Please wait a few minutes before making new requests"
)


def heroku_error(
    status: int, error_id: str, message: str, **extra: Any
) -> JSONResponse:
    return JSONResponse({"id": error_id, "message": message, **extra}, status)


class TokenBucket:
    def __init__(self, capacity: float, refill_per_s: float) -> None:
        self.capacity = capacity
        self.refill_per_s = refill_per_s
        self.tokens = capacity
        self._updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        elapsed = now - self._updated
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_s)
        self._updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Fault:
    status: int
    count: int
    method: str | None = None
    path_contains: str | None = None
    after: bool = False

    def matches(self, request: Request) -> bool:
        if self.method and request.method != self.method.upper():
            return False
        return not self.path_contains or self.path_contains in request.url.path


class FakeState:
    def __init__(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.runner = DynoRunner(settings)
        self.bucket = TokenBucket(settings.rate_capacity, settings.rate_refill_per_s)
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def take_fault(self, request: Request) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and fault.matches(request):
                fault.count -= 1
                return fault
        return None


def create_app(settings: FakeSettings | None = None) -> FastAPI:
    state = FakeState(settings or FakeSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.runner.kill_all()

    app = FastAPI(title="Fake Heroku Platform API", lifespan=lifespan)
    app.state.fake = state
    _add_platform_checks(app, state)
    _add_dyno_routes(app, state)
    _add_admin_routes(app, state)
    return app


Handler = Callable[[Request], Awaitable[Response]]


def _add_platform_checks(app: FastAPI, state: FakeState) -> None:
    @app.middleware("http")
    async def platform(request: Request, call_next: Handler) -> Response:
        if request.url.path.startswith("/_fake"):
            return await call_next(request)
        state.calls[f"{request.method} {request.url.path}"] += 1
        response = await _checked(request, call_next, state)
        state.statuses[str(response.status_code)] += 1
        response.headers["Request-Id"] = str(uuid.uuid4())
        response.headers["RateLimit-Remaining"] = str(int(state.bucket.tokens))
        return response


async def _checked(request: Request, call_next: Handler, state: FakeState) -> Response:
    """Apply the checks the real API makes before it runs a call."""
    if not _ACCEPT.match(request.headers.get("accept", "")):
        return heroku_error(
            406,
            "not_acceptable",
            "Please specify a version along with Heroku's API MIME type. "
            "For example, `Accept: application/vnd.heroku+json; version=3`.",
        )
    if request.headers.get("authorization", "") != f"Bearer {state.settings.token}":
        return heroku_error(401, "unauthorized", "Invalid credentials provided.")
    if not state.bucket.take():
        return heroku_error(
            429, "rate_limit", _RATE_LIMIT_MESSAGE, url="https://devcenter.heroku.com/"
        )
    fault = state.take_fault(request)
    if fault is None:
        return await call_next(request)
    if fault.after:
        await call_next(request)
    return _fault_response(fault.status)


def _fault_response(status: int) -> JSONResponse:
    if status == 429:
        return heroku_error(429, "rate_limit", _RATE_LIMIT_MESSAGE)
    if status == 409:
        return heroku_error(409, "conflict", "Release not found yet; retry.")
    return heroku_error(status, "internal_server_error", "Injected fault.")


def _add_dyno_routes(app: FastAPI, state: FakeState) -> None:
    runner, settings = state.runner, state.settings

    def known_app(name: str) -> bool:
        return name in settings.app_names

    @app.post("/apps/{app_name}/dynos")
    async def create(app_name: str, request: Request) -> Response:
        if not known_app(app_name):
            return _app_not_found(app_name)
        try:
            body = await request.json()
        except ValueError:
            return heroku_error(400, "bad_request", "Request body is not valid JSON.")
        problem = validate_create(body)
        if problem:
            return heroku_error(422, "invalid_params", problem)
        size = str(body.get("size", "standard-1X"))
        limit = settings.one_off_limit
        if len(runner.app_dynos(app_name)) >= limit:
            return heroku_error(
                422,
                "cannot_run_above_limit",
                f"Cannot run more than {limit} {size} size dynos.",
                url="https://devcenter.heroku.com/articles/dyno-size",
                limit=limit,
                size=size,
            )
        dyno = Dyno(
            app=app_name,
            command=body["command"],
            type=str(body.get("type", "run")),
            size=size,
            env=dict(body.get("env", {})),
            time_to_live_s=body.get("time_to_live"),
        )
        await runner.start(dyno)
        return JSONResponse(dyno.to_api(settings.boot_s), 201)

    @app.get("/apps/{app_name}/dynos")
    async def list_dynos(app_name: str, request: Request) -> Response:
        if not known_app(app_name):
            return _app_not_found(app_name)
        try:
            requested = parse_range(request.headers.get("range"))
        except RangeError as exc:
            return heroku_error(416, "requested_range_not_satisfiable", str(exc))
        items = [d.to_api(settings.boot_s) for d in runner.app_dynos(app_name)]
        page, more = apply_range(items, requested)
        response = JSONResponse(page, 206 if more else 200)
        response.headers["Accept-Ranges"] = "id, name"
        if page:
            first, last = page[0][requested.field], page[-1][requested.field]
            response.headers["Content-Range"] = f"{requested.field} {first}..{last}"
        if more:
            response.headers["Next-Range"] = requested.next_range(
                page[-1][requested.field]
            )
        return response

    @app.get("/apps/{app_name}/dynos/{dyno_ref}")
    async def info(app_name: str, dyno_ref: str) -> Response:
        dyno = find_dyno(app_name, dyno_ref)
        if dyno is None:
            return _dyno_not_found(dyno_ref)
        dyno.info_calls += 1
        if dyno.info_calls <= settings.info_404_count:
            return _dyno_not_found(dyno_ref)
        return JSONResponse(dyno.to_api(settings.boot_s))

    @app.post("/apps/{app_name}/dynos/{dyno_ref}/actions/stop")
    async def stop(app_name: str, dyno_ref: str) -> Response:
        dyno = find_dyno(app_name, dyno_ref)
        if dyno is None:
            return _dyno_not_found(dyno_ref)
        runner.stop(dyno)
        return JSONResponse({}, 202)

    @app.delete("/apps/{app_name}/dynos/{dyno_ref}")
    async def restart(app_name: str, dyno_ref: str) -> Response:
        dyno = find_dyno(app_name, dyno_ref)
        if dyno is None:
            return _dyno_not_found(dyno_ref)
        # As on the platform, DELETE stops only `run` dynos; a one-off of a
        # custom type keeps running.
        if dyno.type == "run":
            runner.stop(dyno)
        return JSONResponse({}, 202)

    @app.delete("/apps/{app_name}/dynos")
    async def restart_all(app_name: str) -> Response:
        if not known_app(app_name):
            return _app_not_found(app_name)
        return JSONResponse({}, 202)

    def find_dyno(app_name: str, dyno_ref: str) -> Dyno | None:
        for dyno in runner.app_dynos(app_name):
            if dyno_ref in (dyno.id, dyno.name):
                return dyno
        return None


def validate_create(body: Any) -> str | None:
    """Return what is wrong with a dyno create body, or None when it is valid."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object."
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        return f"Unknown parameters: {', '.join(sorted(unknown))}."
    command = body.get("command")
    if not isinstance(command, str) or not command:
        return "Missing required params: command."
    for name in ("attach", "force_no_tty"):
        if name in body and not isinstance(body[name], bool | None):
            return f"Invalid {name}: expected a boolean."
    for name in ("size", "type"):
        if name in body and not isinstance(body[name], str):
            return f"Invalid {name}: expected a string."
    return _validate_env(body.get("env", {})) or _validate_ttl(body)


def _validate_env(env: Any) -> str | None:
    if not isinstance(env, dict):
        return "Invalid env: expected an object."
    for key, value in env.items():
        if not _ENV_KEY.match(key):
            return f"Invalid env key {key!r}: keys must match ^\\w+$."
        if not isinstance(value, str):
            return f"Invalid env value for {key}: expected a string."
    return None


def _validate_ttl(body: dict[str, Any]) -> str | None:
    if "time_to_live" not in body:
        return None
    ttl = body["time_to_live"]
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int)
        or not 0 < ttl <= _MAX_TIME_TO_LIVE_S
    ):
        return (
            f"Invalid time_to_live {ttl!r}: expected an integer of 1 to 86400 seconds."
        )
    return None


def _app_not_found(name: str) -> JSONResponse:
    return heroku_error(404, "not_found", f"Couldn't find that app: {name}.")


def _dyno_not_found(ref: str) -> JSONResponse:
    return heroku_error(404, "not_found", f"Couldn't find that process: {ref}.")


def _add_admin_routes(app: FastAPI, state: FakeState) -> None:
    @app.post("/_fake/faults")
    async def add_fault(request: Request) -> dict[str, int]:
        body = await request.json()
        state.faults.append(Fault(**body))
        return {"pending": sum(f.count for f in state.faults)}

    @app.post("/_fake/config")
    async def configure(request: Request) -> dict[str, float]:
        body = await request.json()
        bucket = state.bucket
        bucket.capacity = float(body.get("rate_capacity", bucket.capacity))
        bucket.refill_per_s = float(body.get("rate_refill_per_s", bucket.refill_per_s))
        bucket.tokens = float(body.get("tokens", bucket.tokens))
        for name in ("one_off_limit", "info_404_count", "stop_grace_s"):
            if name in body:
                setattr(state.settings, name, body[name])
        return {"tokens": bucket.tokens}

    @app.get("/_fake/dynos")
    async def all_dynos() -> list[dict[str, Any]]:
        return [_admin_view(dyno, state) for dyno in state.runner.dynos.values()]

    @app.get("/_fake/stats")
    async def stats() -> dict[str, Any]:
        return {
            "calls": dict(state.calls),
            "statuses": dict(state.statuses),
            "created": state.runner.created_total,
        }

    @app.post("/_fake/reset")
    async def reset() -> dict[str, bool]:
        await state.runner.kill_all()
        fresh = FakeSettings()
        state.settings.__dict__.update(fresh.__dict__)
        state.bucket = TokenBucket(fresh.rate_capacity, fresh.rate_refill_per_s)
        state.faults.clear()
        state.calls.clear()
        state.statuses.clear()
        await asyncio.sleep(0)
        return {"reset": True}


def _admin_view(dyno: Dyno, state: FakeState) -> dict[str, Any]:
    view = dyno.to_api(state.settings.boot_s)
    view["pid"] = dyno.process.pid if dyno.process else None
    view["env"] = dyno.env
    view["time_to_live"] = dyno.time_to_live_s
    view["stopping"] = dyno.stopping
    return view
