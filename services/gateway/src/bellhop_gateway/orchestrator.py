"""HTTP client for the orchestrator's session API (POST and DELETE /v1/sessions).

OrchestratorError carries two messages: `public` is safe to show the browser,
the exception text is for the log and may name the orchestrator's URL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from bellhop_shared.logging import describe_error

logger = logging.getLogger(__name__)

# Backoff before each retry of a call that failed in transport; POST is safe
# to repeat because the orchestrator returns the existing record for a known id.
RETRY_DELAYS_S = (0.5, 1.0, 2.0)


class OrchestratorError(Exception):
    """The orchestrator did not create or delete a session."""

    def __init__(self, message: str, public: str, code: str) -> None:
        super().__init__(message)
        self.public = public
        self.code = code


def _detail(response: httpx.Response) -> str:
    try:
        detail: Any = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return detail if isinstance(detail, str) else str(detail)


def _error_for(response: httpx.Response, dataset: str) -> OrchestratorError:
    detail = _detail(response)
    status = response.status_code
    logged = f"orchestrator returned HTTP {status} for dataset={dataset}: {detail}"
    if status == 422:
        return OrchestratorError(logged, detail, "unknown_dataset")
    if status == 503:
        retry_after = response.headers.get("Retry-After", "a few")
        if "retry" in detail.lower():
            # The orchestrator's text already contains the time to retry.
            public = f"No worker is available right now: {detail}"
        else:
            public = (
                f"No worker is available right now ({detail}); "
                f"retry in {retry_after} s."
            )
        return OrchestratorError(logged, public, "over_capacity")
    if status in (401, 403):
        logged += "; check ORCHESTRATOR_TOKEN"
    return OrchestratorError(
        logged,
        "The gateway could not start a worker; try again later.",
        "orchestrator_error",
    )


def _record(response: httpx.Response) -> dict[str, Any]:
    try:
        record = response.json()
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise OrchestratorError(
            f"orchestrator returned HTTP {response.status_code} without a JSON "
            f"session record: {response.text[:200]!r}",
            "The gateway could not start a worker; try again later.",
            "orchestrator_error",
        )
    return record


class OrchestratorClient:
    """Creates and deletes sessions, retrying transport failures with backoff."""

    def __init__(self, base_url: str, token: str | None, timeout_s: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base_url, headers=headers, timeout=timeout_s
        )

    async def create_session(
        self, session_id: str, dataset: str, user: str | None
    ) -> dict[str, Any]:
        """POST /v1/sessions and return the session record."""
        body = {"dataset": dataset, "session_id": session_id, "user": user}
        response = await self._send("POST", "/v1/sessions", session_id, json=body)
        if response.status_code not in (200, 201):
            raise _error_for(response, dataset)
        return _record(response)

    async def delete_session(self, session_id: str) -> dict[str, Any] | None:
        """DELETE /v1/sessions/{id}; return the final record, None when unknown."""
        response = await self._send("DELETE", f"/v1/sessions/{session_id}", session_id)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _error_for(response, "-")
        return _record(response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self, method: str, path: str, session_id: str, **kwargs: Any
    ) -> httpx.Response:
        for attempt, delay_s in enumerate((*RETRY_DELAYS_S, None), start=1):
            try:
                return await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if delay_s is None:
                    raise self._unreachable(method, session_id, exc) from exc
                logger.warning(
                    "orchestrator %s %s failed session=%s attempt=%d error=%s; "
                    "retrying in %.1f s",
                    method,
                    self._base_url,
                    session_id,
                    attempt,
                    describe_error(exc),
                    delay_s,
                )
                await asyncio.sleep(delay_s)
        raise AssertionError("unreachable: the loop returns or raises")

    def _unreachable(
        self, method: str, session_id: str, exc: Exception
    ) -> OrchestratorError:
        return OrchestratorError(
            f"orchestrator {method} {self._base_url} failed session={session_id} "
            f"error={exc!r}; giving up after {len(RETRY_DELAYS_S) + 1} attempts",
            "The session service is unreachable right now; try again in a moment.",
            "orchestrator_unreachable",
        )
