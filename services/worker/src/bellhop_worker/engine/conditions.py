"""Evaluate the `where`, `exclude` and `range` params shared by filter and compute.

`where` ORs the listed values within a field and ANDs the fields. `exclude`
drops every row that contains a listed value. `range` keeps rows whose value
lies in [min, max], both inclusive, and a null bound leaves that end open. A
missing value is never in a range, and null in a value list selects it.

A value of the right type that the column does not hold (carrier "ZZ", month
13) matches no row and adds a warning naming it and the valid values, so a
client with a stale value list still gets a correct result and learns why.
A value of the wrong type raises InvalidParams (see values.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bellhop_shared.jsonrpc import InvalidParams

from bellhop_worker.engine import bitset
from bellhop_worker.engine.columns import Column, facet_key
from bellhop_worker.engine.index import Index, list_names
from bellhop_worker.engine.params import json_text
from bellhop_worker.engine.values import coerce, coerce_bound

# How many values a warning lists before it cuts off.
_MAX_LISTED_VALUES = 30
# Warnings listed per request; a where listing thousands of absent values
# would otherwise get a response of megabytes.
MAX_WARNINGS = 20


@dataclass
class Selection:
    """The rows a request's conditions select, with warnings about its values."""

    bits: np.ndarray
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # Warnings left out of `warnings` because it already held MAX_WARNINGS.
    warnings_omitted: int = 0

    def add_to(self, result: dict[str, Any]) -> None:
        """Add the warnings and the count of those left out to a result."""
        if self.warnings:
            result["warnings"] = self.warnings
        if self.warnings_omitted:
            result["warnings_omitted"] = self.warnings_omitted


def select_rows(index: Index, params: dict[str, Any]) -> Selection:
    """Return the rows matching params' where, exclude and range."""
    selection = Selection(bits=index.all_rows)
    parts: list[np.ndarray] = []
    for name, values in _field_lists(params, "where").items():
        column = index.column(name, "where")
        parts.append(_value_rows(index, column, values, "where", selection))
    for name, values in _field_lists(params, "exclude").items():
        column = index.column(name, "exclude")
        excluded = _value_rows(index, column, values, "exclude", selection)
        # Every part is a subset of all_rows, so XOR keeps exactly the others.
        parts.append(np.bitwise_xor(index.all_rows, excluded))
    for name, bounds in _range_bounds(params).items():
        column = index.numeric_column(name, "range")
        parts.append(_range_rows(column, bounds))
    selection.bits = _intersect(index.all_rows, parts)
    return selection


def _intersect(all_rows: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """Return a new, writable bitset of the rows in every part (all rows if none).

    Parts may be read-only views of the index's bitsets, which are never written.
    """
    if not parts:
        return all_rows.copy()
    if len(parts) == 1:
        return parts[0].copy()
    bits = np.bitwise_and(parts[0], parts[1])
    for part in parts[2:]:
        np.bitwise_and(bits, part, out=bits)
    return bits


def _field_lists(params: dict[str, Any], setting: str) -> dict[str, list[Any]]:
    mapping = params.get(setting)
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise InvalidParams(
            f"Invalid {setting!r}: expected an object mapping field names to lists "
            f'of values, such as {{"carrier": ["UA", "DL"]}}, '
            f"got {_json_type(mapping)}.",
            {"setting": setting},
        )
    for name, values in mapping.items():
        if not isinstance(values, list):
            raise InvalidParams(
                f"Invalid {setting!r} values for field {name!r}: expected a list such "
                f"as [{json_text(values)}], got {_json_type(values)}.",
                {"setting": setting, "field": name},
            )
    return mapping


def _range_bounds(params: dict[str, Any]) -> dict[str, list[Any]]:
    mapping = params.get("range")
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise InvalidParams(
            "Invalid 'range': expected an object mapping numeric fields to [min, max], "
            f'such as {{"dep_delay": [0, 60]}}, got {_json_type(mapping)}.',
            {"setting": "range"},
        )
    for name, bounds in mapping.items():
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise InvalidParams(
                f"Invalid 'range' for field {name!r}: expected [min, max] with null "
                f"for an open end, such as [0, null], got {json_text(bounds)}.",
                {"setting": "range", "field": name},
            )
    return mapping


def _value_rows(
    index: Index, column: Column, values: list[Any], setting: str, selection: Selection
) -> np.ndarray:
    """Return the rows holding any of values in column (maybe a read-only view)."""
    # Warnings name a value as the client sent it, not as coerced.
    sent = [value for value in values if value is not None]
    present = [coerce(column, value, setting) for value in sent]
    if column.codes is not None:
        bits = _dictionary_rows(column, present, sent, setting, selection)
    else:
        bits = _numeric_rows(column, present, sent, setting, selection)
    if len(present) < len(values):
        bits = bits | _missing_rows(index, column)
    return bits


def _missing_rows(index: Index, column: Column) -> np.ndarray:
    if column.missing_bits is not None:
        return column.missing_bits
    if column.codes is not None:
        return bitset.from_bool(column.codes == column.missing_code)
    assert column.valid_bits is not None
    return index.all_rows & ~column.valid_bits


def _dictionary_rows(
    column: Column,
    values: list[Any],
    sent: list[Any],
    setting: str,
    selection: Selection,
) -> np.ndarray:
    lookup = column.code_lookup()
    codes = []
    for value, original in zip(values, sent, strict=True):
        code = lookup.get(value)
        if code is None:
            _warn_absent(column, original, setting, selection)
        else:
            codes.append(code)
    if column.bitsets is not None:
        if not codes:
            return np.zeros(column.bitsets.shape[1], dtype="<u8")
        if len(codes) == 1:
            return column.bitsets[codes[0]]
        # ORing row by row skips the copy of the rows that fancy indexing makes.
        bits = np.bitwise_or(column.bitsets[codes[0]], column.bitsets[codes[1]])
        for code in codes[2:]:
            np.bitwise_or(bits, column.bitsets[code], out=bits)
        return bits
    assert column.codes is not None
    return bitset.from_bool(np.isin(column.codes, np.array(codes, dtype=np.int64)))


def _numeric_rows(
    column: Column,
    values: list[Any],
    sent: list[Any],
    setting: str,
    selection: Selection,
) -> np.ndarray:
    assert column.values is not None and column.valid_bits is not None
    if not values:
        return np.zeros(len(column.valid_bits), dtype="<u8")
    distinct = column.distinct_values()
    targets = np.array(values, dtype=np.float64)
    positions = np.searchsorted(distinct, targets).clip(0, max(len(distinct) - 1, 0))
    for value, original, position in zip(values, sent, positions.tolist(), strict=True):
        if len(distinct) == 0 or distinct[position] != value:
            _warn_absent(column, original, setting, selection)
    hits = bitset.from_bool(np.isin(column.values, targets))
    return hits & column.valid_bits


def _range_rows(column: Column, bounds: list[Any]) -> np.ndarray:
    low = coerce_bound(column, bounds[0], "range")
    high = coerce_bound(column, bounds[1], "range")
    if low is not None and high is not None and low > high:
        raise InvalidParams(
            f"Invalid 'range' for field {column.name!r}: min "
            f"{json_text(bounds[0])} is greater than max {json_text(bounds[1])}; "
            "swap them.",
            {"setting": "range", "field": column.name},
        )
    assert column.values is not None and column.valid_bits is not None
    if low is None and high is None:
        return column.valid_bits
    if low is None:
        mask = column.values <= high
    else:
        mask = column.values >= low
        if high is not None:
            mask &= column.values <= high
    return bitset.from_bool(mask) & column.valid_bits


def _warn_absent(
    column: Column, value: Any, setting: str, selection: Selection
) -> None:
    if len(selection.warnings) >= MAX_WARNINGS:
        selection.warnings_omitted += 1
        return
    if column.dictionary is not None:
        keys = [facet_key(column.type, v) for v in column.dictionary]
        valid = (
            f"valid values: {list_names(keys[:_MAX_LISTED_VALUES])}"
            if len(keys) <= _MAX_LISTED_VALUES
            else f"it has {len(keys)} distinct values, listed by describe"
        )
    else:
        valid = "describe lists its min and max"
    selection.warnings.append(
        {
            "setting": setting,
            "field": column.name,
            "value": value,
            "message": f"Field {column.name!r} has no value {json_text(value)} in "
            f"{setting!r}, "
            f"so it matches no row; {valid}.",
        }
    )


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"number {json_text(value)}"
    return names.get(type(value), type(value).__name__)
