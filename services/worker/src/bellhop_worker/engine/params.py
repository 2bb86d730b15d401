"""Checks for the params of filter and compute that are not conditions."""

from __future__ import annotations

import json
import math
from typing import Any

from bellhop_shared.jsonrpc import InvalidParams

from bellhop_worker.engine.index import list_names

CONDITION_KEYS = ("where", "exclude", "range")
# Maximum length of a client's value quoted in an error message.
_MAX_ECHOED_CHARS = 80


def json_safe(value: Any) -> Any:
    """Return value, or for NaN and infinities the JSON literal as a string.

    An error's data echoes the request's value, and JSON cannot carry a
    non-finite number, so without this the error would lose its data.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    return value


def json_text(value: Any) -> str:
    """Render a value from a request for an error message, shortened.

    Clients write JSON, so true, null and {"a": 1} read better to them than
    Python's True, None and {'a': 1}. A string keeps single quotes, like the
    field and param names around it.
    """
    try:
        if isinstance(value, str):
            text = repr(value)
        else:
            text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > _MAX_ECHOED_CHARS:
        return text[: _MAX_ECHOED_CHARS - 3] + "..."
    return text


def as_params(params: Any, method: str) -> dict[str, Any]:
    """Return params as a dict; None means no params."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams(
            f"Invalid params for {method!r}: expected an object with named params "
            f'such as {{"where": {{...}}}}, got {type(params).__name__}.',
        )
    return params


def check_keys(params: dict[str, Any], allowed: tuple[str, ...], method: str) -> None:
    """Raise InvalidParams for a param name the method does not take."""
    unknown = [key for key in params if key not in allowed]
    if unknown:
        raise InvalidParams(
            f"Unknown param {unknown[0]!r} for {method!r}; valid params: "
            f"{list_names(list(allowed))}.",
            {"param": unknown[0], "valid": list(allowed)},
        )


def integer(
    params: dict[str, Any], key: str, default: int, minimum: int, maximum: int
) -> int:
    """Return params[key] as an int in minimum..maximum, default when absent."""
    value = params.get(key, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(
            f"Invalid {key!r}: expected a whole number from {minimum} to {maximum}, "
            f"got {json_text(value)}.",
            {"param": key, "value": value},
        )
    if not minimum <= value <= maximum:
        raise InvalidParams(
            f"Invalid {key!r}: {value} is outside {minimum}..{maximum}; "
            f"use a value in that range.",
            {"param": key, "value": value},
        )
    return value
