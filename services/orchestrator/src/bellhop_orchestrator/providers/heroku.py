"""Heroku provider: one detached one-off dyno per session.

The dyno runs `bellhop-worker --session ID --dataset NAME [--user ID]` with a
custom process type (HEROKU_DYNO_TYPE, so it uses that type's image), a
`time_to_live` backstop and only non-secret dyno environment; REDIS_URL and
DATABASE_URL come from the app's config vars. provider_ref is the dyno id,
because one-off dyno names are not stable. A dyno is matched to its session
through its command, which the list endpoint returns.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Collection
from typing import Any

from bellhop_orchestrator.errors import ProviderCapacityError, ProviderError
from bellhop_orchestrator.metrics import Metrics
from bellhop_orchestrator.providers.base import (
    RunningWorker,
    WorkerExit,
    WorkerSpec,
    WorkerStatus,
)
from bellhop_orchestrator.providers.heroku_client import HerokuApiError, HerokuClient
from bellhop_orchestrator.providers.local import session_from_argv
from bellhop_orchestrator.settings import OrchestratorSettings

logger = logging.getLogger(__name__)

WORKER_PROGRAM = "bellhop-worker"
# Cloud Native Buildpack apps run commands through `launcher`.
_LAUNCHER = "launcher"
# Right after a create, the API may return 404 for the new dyno for a moment.
_FRESH_DYNO_S = 30.0
_FRESH_404_RETRIES = 5
_FRESH_404_DELAY_S = 0.5
_CREATE_ATTEMPTS = 3
_RUNNING_STATES = {"starting", "up", "idle", "down"}


def dyno_command(spec: WorkerSpec) -> str:
    return shlex.join([WORKER_PROGRAM, *spec.worker_args()])


def session_of_command(command: str) -> str | None:
    """Return the session id of a Bellhop worker command, else None."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if argv[:1] == [_LAUNCHER]:
        argv = argv[1:]
    if argv[:1] != [WORKER_PROGRAM]:
        return None
    return session_from_argv(argv)


class HerokuProvider:
    """Starts and stops one-off dynos through the Platform API."""

    name = "heroku"

    def __init__(
        self,
        settings: OrchestratorSettings,
        metrics: Metrics | None = None,
        client: HerokuClient | None = None,
    ) -> None:
        token = settings.heroku_api_token
        self._settings = settings
        self._metrics = metrics
        self._client = client or HerokuClient(
            settings.heroku_api_url,
            token.get_secret_value() if token else "",
            settings.heroku_app or "",
            timeout_s=settings.heroku_request_timeout_s,
            first_backoff_s=settings.heroku_first_backoff_s,
            max_backoff_s=settings.heroku_max_backoff_s,
            server_error_retries=settings.heroku_server_error_retries,
            on_error=self._count_error,
        )
        self._created_at: dict[str, float] = {}

    async def start(self, spec: WorkerSpec) -> str:
        dyno = await self._create(spec)
        dyno_id = str(dyno["id"])
        self._created_at[dyno_id] = time.monotonic()
        logger.info(
            "session %s started worker=%s provider=heroku dyno=%s name=%s",
            spec.session_id,
            spec.worker_id,
            dyno_id,
            dyno.get("name"),
        )
        return dyno_id

    async def stop(self, provider_ref: str, reason: str) -> None:
        logger.info("dyno %s stopping reason=%r", provider_ref, reason)
        for attempt in range(_FRESH_404_RETRIES + 1):
            try:
                await self._client.stop_dyno(provider_ref)
                return
            except HerokuApiError as exc:
                if exc.status != 404:
                    raise self._explain(exc) from exc
            if not self._is_fresh(provider_ref) or attempt == _FRESH_404_RETRIES:
                logger.info("dyno %s is already gone", provider_ref)
                self._created_at.pop(provider_ref, None)
                return
            await asyncio.sleep(_FRESH_404_DELAY_S)

    async def list(self) -> list[RunningWorker]:
        try:
            dynos = await self._client.list_dynos(self._settings.heroku_page_size)
        except HerokuApiError as exc:
            raise self._explain(exc) from exc
        return [worker for worker in map(_as_worker, dynos) if worker is not None]

    async def poll(self, provider_ref: str) -> WorkerStatus:
        dyno = await self._info(provider_ref)
        if dyno is None:
            return WorkerStatus.EXITED
        if not dyno:
            return WorkerStatus.UNKNOWN
        if dyno.get("state") in _RUNNING_STATES:
            return WorkerStatus.RUNNING
        return WorkerStatus.EXITED

    async def find_exited(
        self, provider_refs: Collection[str]
    ) -> dict[str, WorkerExit]:
        """Find gone dynos with one list call, and one info call per missing dyno.

        The Platform API reports no exit status, so every exit found here has
        an unknown status. A dyno absent from the list is confirmed with an
        info call, because the list can lag behind a create.
        """
        if not provider_refs:
            return {}
        try:
            dynos = await self._client.list_dynos(self._settings.heroku_page_size)
        except HerokuApiError as exc:
            raise self._explain(exc) from exc
        states = {str(dyno.get("id")): dyno.get("state") for dyno in dynos}
        exits = {}
        for ref in provider_refs:
            if ref not in states:
                if await self._is_gone(ref):
                    exits[ref] = WorkerExit(None, "the dyno is gone", certain=False)
            elif states[ref] in _RUNNING_STATES:
                # Listed once, so from now on a 404 means the dyno is gone.
                self._created_at.pop(ref, None)
            else:
                exits[ref] = WorkerExit(None, f"the dyno state is {states[ref]}")
        return exits

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _is_gone(self, dyno_id: str) -> bool:
        """Confirm with an info call that a dyno missing from the list is gone.

        A dyno that this process created less than 30 s ago and has not seen
        listed yet counts as running, because the API can lag behind a
        create. A crash that early is found once the 30 s have passed, or
        when the heartbeat key expires.

        A dyno that another orchestrator replica created moments ago is not
        fresh here, so if both the list and the info call lag behind its
        create, it is reported gone. Such an exit is marked uncertain, and
        the reaper ignores it for a session younger than 30 s.
        """
        # NOTE: a dyno that crashes while fresh and unlisted is reported only
        # once it is 30 s old. If its heartbeat key has expired by then, the
        # reaper takes the exit for a clean one (worker_exited, not failed).
        if self._is_fresh(dyno_id):
            return False
        return await self.poll(dyno_id) is WorkerStatus.EXITED

    async def _info(self, dyno_id: str) -> dict[str, Any] | None:
        """Return the dyno, None when it is gone, or {} when that is unknown.

        A dyno created moments ago may still return 404, so a fresh one is
        requested again a few times before the 404 counts.
        """
        for attempt in range(_FRESH_404_RETRIES + 1):
            try:
                return await self._client.dyno_info(dyno_id)
            except HerokuApiError as exc:
                if exc.status != 404:
                    return {}
            if not self._is_fresh(dyno_id):
                return None
            if attempt < _FRESH_404_RETRIES:
                await asyncio.sleep(_FRESH_404_DELAY_S)
        return {}

    async def _create(self, spec: WorkerSpec) -> dict[str, Any]:
        """Create the dyno; after a lost response, adopt a dyno that did start.

        A 5xx or a dropped connection leaves the outcome unknown, so before
        trying again the dyno list is searched for this session's command.
        Creating blindly could leave two dynos for one session.
        """
        body = self._create_body(spec)
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                return await self._client.create_dyno(body)
            except HerokuApiError as exc:
                if not exc.is_outcome_unknown or attempt == _CREATE_ATTEMPTS:
                    raise self._explain(exc) from exc
                logger.warning(
                    "session %s dyno create outcome unknown status=%d attempt=%d; "
                    "looking for the dyno before retrying",
                    spec.session_id,
                    exc.status,
                    attempt,
                )
            existing = await self._find_dyno(spec.session_id)
            if existing is not None:
                return existing
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _find_dyno(self, session_id: str) -> dict[str, Any] | None:
        try:
            dynos = await self._client.list_dynos(self._settings.heroku_page_size)
        except HerokuApiError as exc:
            raise self._explain(exc) from exc
        for dyno in dynos:
            if session_of_command(str(dyno.get("command", ""))) == session_id:
                logger.info("session %s adopted dyno %s", session_id, dyno.get("id"))
                return dyno
        return None

    def _create_body(self, spec: WorkerSpec) -> dict[str, Any]:
        env = {
            "WORKER_ID": spec.worker_id,
            "BELLHOP_SESSION_ID": spec.session_id,
            "BELLHOP_DATASET": spec.dataset,
            **self._settings.worker_environment(),
        }
        if spec.user:
            env["BELLHOP_USER"] = spec.user
        return {
            "command": dyno_command(spec),
            "env": env,
            "type": self._settings.heroku_dyno_type,
            "size": self._settings.heroku_dyno_size,
            "time_to_live": self._settings.worker_time_to_live_s,
            "attach": False,
        }

    def _is_fresh(self, dyno_id: str) -> bool:
        created = self._created_at.get(dyno_id)
        return created is not None and time.monotonic() - created < _FRESH_DYNO_S

    def _explain(self, exc: HerokuApiError) -> ProviderError:
        """Turn an API error into a message that names the setting to fix."""
        app = self._settings.heroku_app
        retry_after_s = self._settings.limit_retry_after_s
        if exc.error_id == "cannot_run_above_limit":
            limit, size = exc.body.get("limit"), exc.body.get("size")
            return ProviderCapacityError(
                f"The Heroku app {app} runs its maximum of one-off dynos "
                f"(limit={limit}, size={size}); retry later.",
                retry_after_s=retry_after_s,
            )
        if exc.status == 429:
            return ProviderCapacityError(exc.detail, retry_after_s=retry_after_s)
        if exc.status in (401, 403):
            return ProviderError(
                f"Heroku rejected HEROKU_API_TOKEN ({exc.status} {exc.error_id}): "
                "the token is invalid, expired or lacks access to the app; set a "
                "valid token (`heroku authorizations:create`)."
            )
        if exc.status == 404:
            return ProviderError(
                f"Heroku app {app} or its dyno was not found (404); check HEROKU_APP."
            )
        return exc

    def _count_error(self, operation: str, status: str) -> None:
        if self._metrics is not None:
            self._metrics.count_provider_error(self.name, operation, status)


def _as_worker(dyno: dict[str, Any]) -> RunningWorker | None:
    session_id = session_of_command(str(dyno.get("command", "")))
    if session_id is None:
        return None
    detail = f"name={dyno.get('name')} state={dyno.get('state')}"
    return RunningWorker(str(dyno.get("id")), session_id, None, detail)
