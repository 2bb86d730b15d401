"""JSON-RPC 2.0 dispatch: one raw queue item in, one encoded response (or none) out.

An item is whatever the gateway pushed, normally a request object or a batch
array. Any bytes at all get a JSON-RPC response (or none) without raising, so
the requests queued behind a bad item are still served.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from bellhop_shared.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Envelope,
    InvalidParams,
    RpcError,
    error_for_invalid,
    error_response,
    parse_envelope,
    parse_json,
)

logger = logging.getLogger(__name__)

Response = dict[str, Any]
Params = dict[str, Any]

# Maximum length of a method name echoed back in an error message.
_MAX_ECHOED_NAME = 64

# Numpy scalars and C-contiguous arrays go straight to orjson. Datetimes and
# dataclasses go to _to_builtin, which rejects them as json does.
_ORJSON_OPTIONS = (
    orjson.OPT_SERIALIZE_NUMPY
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


@dataclass(frozen=True)
class Method:
    """A method handler and whether it accepts params (always by name)."""

    handler: Callable[[Params], Any]
    takes_params: bool = True


class Dispatcher:
    """Route JSON-RPC requests to method handlers and build their responses."""

    def __init__(
        self,
        methods: Mapping[str, Method],
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self._methods = dict(methods)
        self._on_request = on_request or (lambda: None)

    @property
    def method_names(self) -> list[str]:
        return sorted(self._methods)

    def handle(self, raw: bytes | str) -> bytes | None:
        """Handle one queue item; return the encoded response, or None for none."""
        try:
            message = parse_json(raw)
        except RpcError as exc:
            return encode(error_response(None, exc.code, exc.message))
        response = self.handle_message(message)
        return None if response is None else encode(response)

    def handle_message(self, message: Any) -> Response | list[Response] | None:
        """Handle one decoded request object or batch array."""
        if isinstance(message, list):
            return self._handle_batch(message)
        return self._handle_single(message)

    def _handle_batch(self, items: list[Any]) -> Response | list[Response] | None:
        if not items:
            return error_response(
                None,
                INVALID_REQUEST,
                "Invalid request: the batch is an empty array; send at least one "
                "request object in it.",
            )
        responses = [self._handle_single(item) for item in items]
        # A batch of notifications only gets no response at all.
        return [response for response in responses if response is not None] or None

    def _handle_single(self, message: Any) -> Response | None:
        self._on_request()
        try:
            envelope = parse_envelope(message)
        except RpcError as exc:
            return error_for_invalid(exc)
        response = self._call(envelope)
        return None if envelope.is_notification else response

    def _call(self, envelope: Envelope) -> Response:
        started = time.perf_counter()
        try:
            result = self._run(envelope)
        except RpcError as exc:
            response = error_response(
                envelope.request_id, exc.code, exc.message, exc.data
            )
        except Exception:
            logger.exception("request failed method=%s", _shorten(envelope.method))
            response = _internal_error(envelope)
        else:
            response = {"jsonrpc": "2.0", "id": envelope.request_id, "result": result}
        took_ms = (time.perf_counter() - started) * 1000
        logger.debug(
            "request handled method=%s took_ms=%.2f", _shorten(envelope.method), took_ms
        )
        return response

    def _run(self, envelope: Envelope) -> Any:
        method = self._methods.get(envelope.method)
        if method is None:
            raise RpcError(
                METHOD_NOT_FOUND,
                f"Method not found: {_shorten(envelope.method)!r}; the worker "
                f"provides {', '.join(self.method_names)}.",
            )
        params = _check_params(envelope, method)
        return method.handler(params)


def _check_params(envelope: Envelope, method: Method) -> Params:
    name = envelope.method
    params = envelope.params
    # An empty array means "no params" in either form, so it is accepted here.
    if isinstance(params, list) and not params:
        return {}
    if isinstance(params, list) and method.takes_params:
        raise InvalidParams(
            f"Invalid params: {name} takes its params by name, got an array; "
            'send "params" as an object such as {"where": {...}}.'
        )
    if params and not method.takes_params:
        raise InvalidParams(
            f"Invalid params: {name} takes no params, got {_describe(params)}; "
            'omit "params" or send {}.'
        )
    return params if isinstance(params, dict) else {}


def _describe(params: Params | list[Any]) -> str:
    if isinstance(params, list):
        return f"an array of {len(params)} items"
    return f"the keys {sorted(params)[:10]}"


def encode(response: Response | list[Response]) -> bytes:
    """Encode a response or a batch of them as UTF-8 JSON text.

    A result that JSON cannot carry (NaN, infinity, an unknown type) turns that
    one response into an internal error instead of losing the whole batch.
    """
    try:
        return _dumps(response)
    except (TypeError, ValueError, RecursionError):
        if isinstance(response, list):
            return b"[" + b",".join(_encode_one(item) for item in response) + b"]"
        return _encode_one(response)


def _encode_one(response: Response) -> bytes:
    try:
        return _dumps(response)
    except (TypeError, ValueError, RecursionError) as exc:
        error = response.get("error")
        if isinstance(error, dict) and "data" in error:
            # An error's data echoes the request (a NaN bound, say). Its
            # message already names the value, so send the error without it.
            without_data = {k: v for k, v in error.items() if k != "data"}
            return _encode_one({**response, "error": without_data})
        logger.error(
            "response is not encodable as JSON id=%r error=%s", response.get("id"), exc
        )
        return _dumps(
            error_response(
                response.get("id"),
                INTERNAL_ERROR,
                "Internal error: the result cannot be encoded as JSON (it contains "
                "NaN, infinity or an unsupported type); the worker logged the details.",
            )
        )


def _dumps(value: Any) -> bytes:
    """Encode value with orjson, or with json where orjson differs from it.

    orjson writes NaN and infinity as null where json raises, so a text with
    null in it is encoded again by json, which decides. orjson also raises
    on lone surrogates, integers over 64 bits and non-string keys, which
    json encodes.
    """
    try:
        encoded = orjson.dumps(value, default=_to_builtin, option=_ORJSON_OPTIONS)
    except TypeError:
        return _dumps_stdlib(value)
    if b"null" in encoded:
        return _dumps_stdlib(value)
    return encoded


def _dumps_stdlib(value: Any) -> bytes:
    # ensure_ascii keeps lone surrogates from client strings encodable as UTF-8.
    text = json.dumps(
        value, allow_nan=False, default=_to_builtin, separators=(",", ":")
    )
    return text.encode()


def _to_builtin(value: Any) -> Any:
    """Convert numpy values that the encoders do not take to Python values."""
    to_list = getattr(value, "tolist", None)
    if callable(to_list):
        return to_list()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _internal_error(envelope: Envelope) -> Response:
    return error_response(
        envelope.request_id,
        INTERNAL_ERROR,
        f"Internal error while running {_shorten(envelope.method)}; the worker "
        "logged the details and keeps serving.",
    )


def _shorten(name: str) -> str:
    if len(name) <= _MAX_ECHOED_NAME:
        return name
    return name[:_MAX_ECHOED_NAME] + "..."
