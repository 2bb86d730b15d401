"""Coerce request values to a column's value type.

Values match by meaning, not by JSON type: 7, 7.0 and "7" all select month 7,
and 7 selects the string "7". A value that cannot be of the column's type at
all ("July" for an int column, 7.5 for an int column) raises InvalidParams.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from bellhop_shared.jsonrpc import InvalidParams

from bellhop_worker.engine.columns import Column
from bellhop_worker.engine.params import json_safe, json_text

_TYPE_HINTS = {
    "int": 'a whole number such as 7 or "7"',
    "float": 'a number such as 2.5 or "2.5"',
    "string": "a string",
    "bool": "true or false",
    "timestamp": "seconds since 1970-01-01 UTC or an ISO 8601 text such as "
    '"2013-07-01T00:00:00Z"',
}


def coerce(column: Column, value: Any, setting: str) -> Any:
    """Return value converted to column's stored type; None stays None (missing)."""
    if value is None:
        return None
    converted = _CONVERTERS[column.type](value)
    if converted is None:
        raise InvalidParams(
            f"Invalid value {json_text(value)} for field {column.name!r} in "
            f"{setting!r}: "
            f"{column.name} contains {column.type} values, so use "
            f"{_TYPE_HINTS[column.type]}.",
            {"setting": setting, "field": column.name, "value": value},
        )
    return converted


def coerce_bound(column: Column, value: Any, setting: str) -> float | int | None:
    """Return a range bound as a number; null means unbounded."""
    if value is None:
        return None
    number = _to_timestamp(value) if column.type == "timestamp" else _to_float(value)
    if number is None or (isinstance(value, str) and column.type != "timestamp"):
        example = (
            f"{_TYPE_HINTS['timestamp']}, or null for an open end"
            if column.type == "timestamp"
            else "a number or null, such as [0, 100] or [null, 100]"
        )
        raise InvalidParams(
            f"Invalid bound {json_text(value)} for field {column.name!r} in "
            f"{setting!r}: a bound must be {example}.",
            {"setting": setting, "field": column.name, "value": json_safe(value)},
        )
    return number


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            number = _to_float(value)
            return int(number) if number is not None and number.is_integer() else None
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(number) else number


def _to_string(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _to_timestamp(value: Any) -> int | float | None:
    """Return seconds since the epoch for a number or an ISO 8601 text."""
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return _to_float(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    return _to_float(value)


_CONVERTERS = {
    "int": _to_int,
    "float": _to_float,
    "string": _to_string,
    "bool": _to_bool,
    "timestamp": _to_timestamp,
}
