"""Exceptions the worker raises on its own account.

    WorkerError          any failure of the worker itself
    └── DatasetError     the dataset source is missing, unreadable or malformed

Bad request params are not here: handlers raise bellhop_shared.jsonrpc's
InvalidParams, which the dispatcher turns into a -32602 error response.
"""


class WorkerError(Exception):
    """A failure of the worker itself, as opposed to a bad request."""


class DatasetError(WorkerError):
    """The dataset could not be loaded; the message names the source and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
