"""A small async client for the Heroku Platform API (v3) dyno endpoints.

Retry policy, per call:
- 429 rate_limit: v3 sends no Retry-After, so the client backs off
  exponentially with jitter and gives up once the waits add up to
  `max_backoff_s`, so every call returns or raises within that budget.
- 409 conflict: retried twice, as the Heroku CLI does for dyno creates while
  a new app's release is not yet visible.
- 5xx and transport errors: retried `server_error_retries` times for calls
  that are safe to repeat. A create is not: the caller decides, because the
  dyno may exist even though the response was lost.
The token is sent only in the Authorization header and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from bellhop_shared.logging import describe_error

from bellhop_orchestrator.errors import ProviderError

logger = logging.getLogger(__name__)

ACCEPT = "application/vnd.heroku+json; version=3"
USER_AGENT = "bellhop-orchestrator/0.1"
_CONFLICT_RETRIES = 2
_SERVER_ERROR_DELAY_S = 0.5
# A list with more pages than this is a loop in the server's Next-Range.
_MAX_PAGES = 1000

ErrorHook = Callable[[str, str], None]


class HerokuApiError(ProviderError):
    """The API returned an error status, or no response at all (status 0)."""

    def __init__(self, status: int, error_id: str, message: str, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.body = body if isinstance(body, dict) else {}

    @property
    def is_outcome_unknown(self) -> bool:
        """True when the request may have been applied even though it failed."""
        return self.status == 0 or self.status >= 500


class Backoff:
    """Exponential delays with jitter whose sum stays within a total budget."""

    def __init__(self, first_s: float, budget_s: float) -> None:
        self._next_s = first_s
        self._remaining_s = budget_s

    def next_delay_s(self) -> float | None:
        if self._remaining_s <= 0:
            return None
        delay = min(self._next_s * random.uniform(0.75, 1.25), self._remaining_s)
        self._remaining_s -= delay
        self._next_s *= 2
        return delay


class HerokuClient:
    """Dyno calls for one app, with the headers and retries the API expects."""

    def __init__(
        self,
        base_url: str,
        token: str,
        app: str,
        timeout_s: float = 15.0,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 20.0,
        server_error_retries: int = 3,
        on_error: ErrorHook | None = None,
    ) -> None:
        self.app = app
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._server_error_retries = server_error_retries
        self._on_error = on_error or (lambda operation, status: None)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            headers={
                "Accept": ACCEPT,
                "Authorization": f"Bearer {token}",
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
            },
        )

    async def create_dyno(self, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/apps/{self.app}/dynos"
        response = await self._send("create", "POST", path, body=body, idempotent=False)
        return dict(response.json())

    async def stop_dyno(self, dyno_id: str) -> None:
        path = f"/apps/{self.app}/dynos/{dyno_id}/actions/stop"
        await self._send("stop", "POST", path)

    async def dyno_info(self, dyno_id: str) -> dict[str, Any]:
        response = await self._send("info", "GET", f"/apps/{self.app}/dynos/{dyno_id}")
        return dict(response.json())

    async def list_dynos(self, page_size: int) -> list[dict[str, Any]]:
        """Return every dyno of the app, following Next-Range across 206 pages."""
        dynos: list[dict[str, Any]] = []
        headers = {"Range": f"id ..; max={page_size};"}
        for _ in range(_MAX_PAGES):
            path = f"/apps/{self.app}/dynos"
            response = await self._send("list", "GET", path, headers=headers)
            dynos.extend(response.json())
            next_range = response.headers.get("Next-Range")
            if response.status_code != 206 or not next_range:
                return dynos
            headers = {"Range": next_range}
        raise HerokuApiError(
            0,
            "too_many_pages",
            f"Heroku dyno list did not end after {_MAX_PAGES} pages.",
            {},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one call, retrying per the module's policy; raise HerokuApiError."""
        backoff = Backoff(self._first_backoff_s, self._max_backoff_s)
        conflicts = server_errors = 0
        while True:
            response = await self._request(operation, method, path, body, headers)
            status = response.status_code if response is not None else 0
            if response is not None and status < 400:
                return response
            error = _api_error(operation, response)
            self._on_error(operation, str(status) if status else "transport")
            if status == 429:
                delay_s = backoff.next_delay_s()
                if delay_s is None:
                    raise _rate_limit_exhausted(operation, self._max_backoff_s)
            elif status == 409 and conflicts < _CONFLICT_RETRIES:
                conflicts += 1
                delay_s = _SERVER_ERROR_DELAY_S
            elif (
                error.is_outcome_unknown
                and idempotent
                and (server_errors < self._server_error_retries)
            ):
                server_errors += 1
                delay_s = _SERVER_ERROR_DELAY_S * server_errors
            else:
                logger.error(
                    "heroku %s failed status=%d error=%s", operation, status, error
                )
                raise error
            logger.warning(
                "heroku %s failed status=%d id=%s; retrying in %.2f s",
                operation,
                status,
                error.error_id,
                delay_s,
            )
            await asyncio.sleep(delay_s)

    async def _request(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await self._http.request(
                method, path, json=body, headers=headers
            )
        except httpx.TransportError as exc:
            logger.warning(
                "heroku %s request failed error=%s", operation, describe_error(exc)
            )
            return None
        logger.debug(
            "heroku %s %s status=%d request_id=%s took_ms=%.1f",
            method,
            path,
            response.status_code,
            response.headers.get("Request-Id", ""),
            (time.monotonic() - started) * 1000,
        )
        return response


def _api_error(operation: str, response: httpx.Response | None) -> HerokuApiError:
    if response is None:
        return HerokuApiError(
            0, "transport", f"Heroku API sent no response to the {operation} call.", {}
        )
    try:
        body = response.json()
    except ValueError:
        body = {}
    error_id = body.get("id", "") if isinstance(body, dict) else ""
    message = body.get("message", "") if isinstance(body, dict) else ""
    text = f"Heroku {operation} call failed with {response.status_code} {error_id}"
    return HerokuApiError(
        response.status_code, error_id, f"{text}: {message}".rstrip(": "), body
    )


def _rate_limit_exhausted(operation: str, budget_s: float) -> HerokuApiError:
    logger.error(
        "heroku %s rate limited; giving up after %.1f s of backoff", operation, budget_s
    )
    return HerokuApiError(
        429,
        "rate_limit",
        f"Heroku API rate limit reached; the {operation} call gave up after "
        f"backing off {budget_s:.0f} s. Retry later.",
        {},
    )
