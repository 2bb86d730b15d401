"""JSON-RPC 2.0 messages: error codes, response builders and envelope checks.

The worker and the gateway both validate envelopes with `parse_envelope`, so a
malformed request gets the same error wherever it is caught.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSONRPC_VERSION = "2.0"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application errors, in the -32000..-32099 range reserved for servers.
TIMEOUT = -32000
RATE_LIMITED = -32001
QUEUE_FULL = -32002
MESSAGE_TOO_LARGE = -32003
SESSION_NOT_READY = -32004
SESSION_ENDED = -32005
DATASET_ERROR = -32010

RequestId = str | int | None


class RpcError(Exception):
    """An error that becomes a JSON-RPC error object in a response."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InvalidParams(RpcError):
    """Raised by a method handler when its params are wrong."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(INVALID_PARAMS, message, data)


def result_response(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def error_response(
    request_id: RequestId, code: int, message: str, data: Any = None
) -> dict[str, Any]:
    return {
        "jsonrpc": JSONRPC_VERSION,
        "id": request_id,
        "error": RpcError(code, message, data).to_dict(),
    }


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "method": method, "params": params}


@dataclass(frozen=True)
class Envelope:
    """A request whose envelope is valid; method and params are not yet checked."""

    method: str
    params: dict[str, Any] | list[Any] | None
    request_id: RequestId
    is_notification: bool


# The standard library's parser recurses once per level, so it gives up after
# about this many levels at the default recursion limit (orjson at 1,024).
NESTING_LIMIT_TEXT = "about 1,000 levels"


def nested_too_deeply_error() -> RpcError:
    return RpcError(
        PARSE_ERROR,
        "Parse error: the message nests arrays or objects more than "
        f"{NESTING_LIMIT_TEXT} deep; flatten it.",
    )


def parse_json(text: str | bytes) -> Any:
    """Decode one message, raising RpcError(PARSE_ERROR) when it is not JSON.

    A message nested too deeply for the parser is a parse error too.
    """
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RpcError(
            PARSE_ERROR, f"Parse error: the message is not valid JSON ({exc})."
        ) from exc
    except RecursionError:
        raise nested_too_deeply_error() from None


def is_valid_id(value: Any) -> bool:
    """Return True for a JSON-RPC id: a string, a number or null."""
    # bool is a subclass of int, but true/false are not valid ids.
    if isinstance(value, bool):
        return False
    return value is None or isinstance(value, str | int | float)


def parse_envelope(message: Any) -> Envelope:
    """Check one decoded request object against JSON-RPC 2.0.

    Raises RpcError(INVALID_REQUEST); its `data` holds the request id when one
    could be read, so the caller can still address the error response.
    """
    if not isinstance(message, dict):
        raise RpcError(
            INVALID_REQUEST,
            "Invalid request: expected a JSON object with jsonrpc, method and id, "
            f"got {type(message).__name__}.",
        )
    raw_id = message.get("id")
    request_id = raw_id if is_valid_id(raw_id) else None
    if message.get("jsonrpc") != JSONRPC_VERSION:
        raise RpcError(
            INVALID_REQUEST,
            'Invalid request: "jsonrpc" must be "2.0", '
            f"got {message.get('jsonrpc')!r}.",
            {"id": request_id},
        )
    if not is_valid_id(raw_id):
        raise RpcError(
            INVALID_REQUEST,
            'Invalid request: "id" must be a string, a number or null, '
            f"got {raw_id!r}.",
            {"id": None},
        )
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(
            INVALID_REQUEST,
            f'Invalid request: "method" must be a non-empty string, got {method!r}.',
            {"id": request_id},
        )
    params = message.get("params")
    if "params" in message and not isinstance(params, dict | list):
        # JSON-RPC 2.0 allows params to be omitted, but not to be null.
        got = "null" if params is None else type(params).__name__
        raise RpcError(
            INVALID_REQUEST,
            'Invalid request: "params" must be an object or an array, '
            f"got {got}; omit it to send no params.",
            {"id": request_id},
        )
    return Envelope(
        method=method,
        params=params,
        request_id=request_id,
        is_notification="id" not in message,
    )


def error_for_invalid(exc: RpcError) -> dict[str, Any]:
    """Build the response to a request that failed `parse_envelope`."""
    request_id = exc.data.get("id") if isinstance(exc.data, dict) else None
    return error_response(request_id, exc.code, exc.message)
