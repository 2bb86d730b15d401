"""The orchestrator's exceptions; the API turns each into a JSON error response.

OrchestratorError                 status_code, detail for the client
 +-- SessionNotFound              404: no record for that session id
 +-- SessionConflict              409: the id exists with another dataset or user
 +-- UnknownDataset               422: the name is not in the catalog
 +-- LimitReached                 503 + Retry-After: MAX_WORKERS or per user
 +-- ProviderError                502: the provider failed to start or stop a worker
      +-- ProviderCapacityError   503 + Retry-After: the provider is at its limit
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """An error with a message that is safe to show to the API client."""

    status_code = 500

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class SessionNotFound(OrchestratorError):
    status_code = 404


class SessionConflict(OrchestratorError):
    status_code = 409


class UnknownDataset(OrchestratorError):
    status_code = 422


class LimitReached(OrchestratorError):
    status_code = 503


class ProviderError(OrchestratorError):
    """A provider call failed; `detail` never contains a token or a secret URL."""

    status_code = 502


class ProviderCapacityError(ProviderError):
    status_code = 503
