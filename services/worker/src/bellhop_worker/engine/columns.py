"""The in-memory form of one dataset column.

Every column has a value type and one or more of three representations:

- codes: dictionary codes into `dictionary` (sorted distinct values); the code
  len(dictionary) marks a missing value. Facet and text columns have them.
- bitsets: one packed bitset per dictionary value, a (values, words) matrix,
  plus a bitset of missing rows, the number of rows per value (`totals`),
  the JSON key of each value (`facet_keys`) and a {key: 0} dict in that
  order (`facet_zeros`). Only facet columns have them.
- values: a numpy array (int or float) plus a bitset of valid rows; missing
  and NaN values are invalid. Numeric columns have them, and so do facet
  columns of a numeric type (month, hour), so range filters and compute work.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bellhop_worker.engine import bitset

ValueType = Literal["int", "float", "string", "bool", "timestamp"]
Kind = Literal["facet", "numeric", "text"]


@dataclass
class Column:
    """One column; see the module docstring for which parts are present."""

    name: str
    type: ValueType
    n_rows: int
    codes: np.ndarray | None = None
    dictionary: list[Any] | None = None
    bitsets: np.ndarray | None = None
    missing_bits: np.ndarray | None = None
    totals: np.ndarray | None = None
    facet_keys: list[str] | None = None
    facet_zeros: dict[str, int] | None = None
    values: np.ndarray | None = None
    valid_bits: np.ndarray | None = None
    _distinct: np.ndarray | None = field(default=None, repr=False)
    _lookup: dict[Any, int] | None = field(default=None, repr=False)

    @property
    def kind(self) -> Kind:
        if self.bitsets is not None:
            return "facet"
        if self.values is not None:
            return "numeric"
        return "text"

    @property
    def is_facet(self) -> bool:
        return self.bitsets is not None

    @property
    def is_numeric(self) -> bool:
        return self.values is not None

    @property
    def missing_code(self) -> int:
        return len(self.dictionary or ())

    def distinct_values(self) -> np.ndarray:
        """Return the sorted distinct valid values of a numeric column (cached)."""
        if self._distinct is None:
            assert self.values is not None and self.valid_bits is not None
            valid = bitset.to_bool(self.valid_bits, self.n_rows)
            self._distinct = np.unique(self.values[valid])
        return self._distinct

    def code_lookup(self) -> dict[Any, int]:
        """Return a map from each dictionary value to its code (cached)."""
        if self._lookup is None:
            self._lookup = {
                value: code for code, value in enumerate(self.dictionary or ())
            }
        return self._lookup

    def index_bytes(self) -> int:
        parts = (self.codes, self.bitsets, self.missing_bits, self.values)
        total = sum(part.nbytes for part in parts if part is not None)
        if self.valid_bits is not None:
            total += self.valid_bits.nbytes
        if self.facet_zeros is not None:
            total += sys.getsizeof(self.facet_zeros)
        return total + sum(_python_value_bytes(v) for v in self.dictionary or ())

    def row_values(self, rows: np.ndarray) -> list[Any]:
        """Return the JSON-ready values of the given rows; missing is None."""
        if self.codes is not None:
            assert self.dictionary is not None
            lookup = [*(to_json(self.type, v) for v in self.dictionary), None]
            return [lookup[code] for code in self.codes[rows].tolist()]
        assert self.values is not None and self.valid_bits is not None
        valid = bitset.contains(self.valid_bits, rows).tolist()
        raw = self.values[rows].tolist()
        return [
            to_json(self.type, v) if ok else None
            for v, ok in zip(raw, valid, strict=True)
        ]


def to_json(value_type: ValueType, value: Any) -> Any:
    """Convert one stored value to the form results carry it in."""
    if value_type == "timestamp":
        moment = dt.datetime.fromtimestamp(int(value), tz=dt.UTC)
        return moment.isoformat().replace("+00:00", "Z")
    if value_type == "float":
        return finite_or_none(float(value))
    if value_type == "bool":
        return bool(value)
    return value


def finite_or_none(number: float) -> float | None:
    """Return number, or None for infinity, which JSON cannot carry."""
    return number if math.isfinite(number) else None


def facet_key(value_type: ValueType, value: Any) -> str:
    """Return the JSON object key for a facet value ("7", "UA", "true")."""
    if value_type == "bool":
        return "true" if value else "false"
    converted = to_json(value_type, value)
    if converted is None:
        return str(value)
    if isinstance(converted, float) and converted.is_integer():
        return str(int(converted))
    return str(converted)


def _python_value_bytes(value: Any) -> int:
    if isinstance(value, str):
        return 49 + len(value.encode())
    return 32
