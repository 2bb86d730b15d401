"""A `json` module for python-socketio that encodes and decodes with orjson.

python-socketio and python-engineio call `dumps(data, separators=(",", ":"))`
and expect a str back, and call `loads` with str or bytes. orjson writes
compact JSON already and returns bytes, so `dumps` decodes its output. Values
that orjson rejects (integers wider than 64 bits, NaN literals in input) fall
back to the standard library. One difference remains: orjson writes NaN and
infinities as null, where the standard library writes invalid JSON.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(data: Any, **kwargs: Any) -> str:
    """Encode data as compact JSON text; keyword arguments are for the fallback."""
    try:
        return orjson.dumps(data, option=_OPTIONS).decode()
    except TypeError:
        kwargs.setdefault("separators", (",", ":"))
        return json.dumps(data, **kwargs)


def loads(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # Raises the standard library's error when the text is invalid JSON.
        return json.loads(text, **kwargs)
