"""Turn a loaded pyarrow table into engine columns: dictionary codes, facet
bitsets and numeric arrays.

Facet fields are the catalog's `facets` list when it has one; otherwise every
int, string or bool column with at most MAX_AUTO_FACET_VALUES distinct values.
Numeric fields are the catalog's `numeric` list when it has one; otherwise
every int, float, decimal, date or timestamp column. Every other column keeps
dictionary codes, so filters and `fields` still work on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from bellhop_shared.catalog import DatasetSpec

from bellhop_worker.engine import arrays, bitset
from bellhop_worker.engine.columns import Column, ValueType, facet_key
from bellhop_worker.engine.encode import (
    Encoded,
    encode_dictionary,
    encode_numbers,
    encode_python,
)
from bellhop_worker.errors import DatasetError

MAX_AUTO_FACET_VALUES = 256
# A facet costs one bitset (rows / 8 bytes) per value, so a declared facet is
# capped too; 10,000 values over 1,000,000 rows already take 1.25 GB.
MAX_DECLARED_FACET_VALUES = 10_000


@dataclass
class BuiltTable:
    """The columns of one dataset, in source order, and their raw size."""

    columns: dict[str, Column]
    n_rows: int
    raw_bytes: int


@dataclass
class Decoded:
    """One source column as numpy: numbers, or codes for everything else."""

    type: ValueType
    valid: np.ndarray
    values: np.ndarray | None = None
    encoded: Encoded | None = None


def build_columns(
    table: pa.Table, spec: DatasetSpec, progress: Callable[[float], None]
) -> BuiltTable:
    """Build every column of table; call progress(0..1) after each one."""
    _check_declared(table, spec)
    columns: dict[str, Column] = {}
    raw_bytes = 0
    names = table.column_names
    for position, name in enumerate(names):
        array = arrays.single_chunk(table.column(name))
        raw_bytes += raw_column_bytes(array)
        columns[name] = build_column(name, array, spec)
        progress((position + 1) / len(names))
    return BuiltTable(columns=columns, n_rows=table.num_rows, raw_bytes=raw_bytes)


def build_column(name: str, array: pa.Array, spec: DatasetSpec) -> Column:
    """Build one column from a pyarrow array, following spec's declarations."""
    decoded = decode(name, array, spec)
    column = Column(name=name, type=decoded.type, n_rows=len(array))
    is_numeric = _wants_numeric(name, decoded.type, spec)
    if is_numeric and decoded.values is not None:
        column.values = _narrow(decoded.values, decoded.valid)
        column.valid_bits = bitset.from_bool(decoded.valid)
    declared_facet = spec.facets is not None and name in spec.facets
    if declared_facet:
        encoded = _encoding(decoded, None)
        _check_facet_size(name, encoded)
        _add_facet(column, encoded)
    elif spec.facets is None and decoded.type in ("int", "string", "bool"):
        encoded = _encoding(decoded, MAX_AUTO_FACET_VALUES)
        if encoded is not None:
            _add_facet(column, encoded)
    if column.codes is None and not column.is_numeric:
        column.codes, column.dictionary = _encoding(decoded, None)  # type: ignore[misc]
    return column


def _add_facet(column: Column, encoded: Encoded) -> None:
    codes, dictionary = encoded
    column.codes, column.dictionary = codes, dictionary
    column.bitsets = bitset.from_codes(codes, len(dictionary))
    column.missing_bits = bitset.from_bool(codes == len(dictionary))
    totals = np.bincount(codes, minlength=len(dictionary) + 1)[: len(dictionary)]
    column.totals = totals.astype(np.int64)
    column.facet_keys = [facet_key(column.type, value) for value in dictionary]
    column.facet_zeros = dict.fromkeys(column.facet_keys, 0)
    # Filters return rows of these matrices as views; nothing may write them.
    column.bitsets.flags.writeable = False
    column.missing_bits.flags.writeable = False
    column.totals.flags.writeable = False


def _encoding(decoded: Decoded, max_distinct: int | None) -> Encoded | None:
    """Return decoded's codes, or None when it has more than max_distinct values."""
    if decoded.encoded is not None:
        codes, dictionary = decoded.encoded
        if max_distinct is not None and len(dictionary) > max_distinct:
            return None
        return decoded.encoded
    assert decoded.values is not None
    return encode_numbers(decoded.values, decoded.valid, max_distinct)


def _check_facet_size(name: str, encoded: Encoded | None) -> None:
    assert encoded is not None
    n_values = len(encoded[1])
    if n_values > MAX_DECLARED_FACET_VALUES:
        raise DatasetError(
            f"Facet field {name!r} has {n_values} distinct values, more than the "
            f"{MAX_DECLARED_FACET_VALUES} a facet may have; remove it from the "
            "catalog's facets list."
        )


def _wants_numeric(name: str, value_type: ValueType, spec: DatasetSpec) -> bool:
    if spec.numeric is not None:
        return name in spec.numeric
    return value_type in ("int", "float", "timestamp")


def decode(name: str, array: pa.Array, spec: DatasetSpec) -> Decoded:
    """Read array into numpy: numbers for numeric types, codes for the rest."""
    kind = array.type
    valid = arrays.valid_mask(array)
    if isinstance(kind, pa.DictionaryType):
        return _decode_dictionary(name, array, valid, spec)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = arrays.fixed_width_values(array, arrays.numpy_dtype(kind))
        return _numbers(values, valid)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return Decoded("timestamp", valid, values=arrays.timestamp_seconds(array))
    if pa.types.is_decimal(kind):
        numbers = [None if v is None else float(v) for v in array.to_pylist()]
        return _numbers(np.array(numbers, dtype=np.float64), valid)
    if pa.types.is_boolean(kind):
        codes = np.where(valid, arrays.bool_values(array), 2).astype(np.uint8)
        return Decoded("bool", valid, encoded=_bool_dictionary(codes))
    return _decode_python(name, arrays.python_values(array), valid, spec)


def _decode_dictionary(
    name: str, array: pa.DictionaryArray, valid: np.ndarray, spec: DatasetSpec
) -> Decoded:
    dictionary = array.dictionary.to_pylist()
    if not pa.types.is_string(array.dictionary.type) or _declared_numeric(name, spec):
        return _decode_python(name, array.to_pylist(), valid, spec)
    indices = arrays.fixed_width_values(
        array.indices, arrays.numpy_dtype(array.indices.type)
    )
    return Decoded(
        "string", valid, encoded=encode_dictionary(indices, valid, dictionary)
    )


def _decode_python(
    name: str, values: list, valid: np.ndarray, spec: DatasetSpec
) -> Decoded:
    """Decode values that arrived as Python objects (text, decimals, JSON)."""
    present = [value for value in values if value is not None]
    if _declared_numeric(name, spec) or (present and _all_numbers(present)):
        numbers = np.array([_to_float(name, v) for v in values], dtype=np.float64)
        return _numbers(numbers, valid)
    return Decoded("string", valid, encoded=encode_python(values))


def _numbers(values: np.ndarray, valid: np.ndarray) -> Decoded:
    if values.dtype.kind == "f":
        valid = valid & ~np.isnan(values)
        return Decoded("float", valid, values=values)
    return Decoded("int", valid, values=values)


def _all_numbers(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _declared_numeric(name: str, spec: DatasetSpec) -> bool:
    return spec.numeric is not None and name in spec.numeric


def _to_float(name: str, value: object) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise DatasetError(
            f"Column {name!r} is declared numeric but contains {value!r}; remove it "
            "from the catalog's numeric list or fix the data."
        ) from exc


def _bool_dictionary(codes: np.ndarray) -> Encoded:
    """Encode bools (0, 1, 2 = missing) over the values actually present."""
    present = [value for value in (0, 1) if (codes == value).any()]
    remap = np.full(3, len(present), dtype=np.uint8)
    remap[present] = np.arange(len(present))
    return remap[codes], [bool(value) for value in present]


def _narrow(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Return int values in the narrowest dtype holding them; floats as float64."""
    if values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    values = np.where(valid, values, 0)
    if len(values) == 0:
        return values.astype(np.int8)
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values.astype(np.int64)


def _check_declared(table: pa.Table, spec: DatasetSpec) -> None:
    names = set(table.column_names)
    declared = {
        "facets": spec.facets or [],
        "numeric": spec.numeric or [],
        "id_column": [spec.id_column] if spec.id_column else [],
    }
    for setting, fields in declared.items():
        unknown = [field for field in fields if field not in names]
        if unknown:
            raise DatasetError(
                f"Dataset {spec.name!r} declares {setting} {unknown} that its source "
                f"does not have; the columns are {sorted(names)}. Fix the catalog."
            )


def raw_column_bytes(array: pa.Array) -> int:
    """Return the bytes of the column as a numpy array of its natural dtype.

    Numbers and timestamps take their own width; text takes a fixed-width
    numpy unicode array, 4 bytes per character of the longest value.
    """
    kind = array.type
    if isinstance(kind, pa.DictionaryType):
        if not pa.types.is_string(kind.value_type):
            return 8 * len(array)
        longest = max((len(v) for v in array.dictionary.to_pylist() if v), default=1)
        return 4 * longest * len(array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        offsets_dtype = np.int64 if pa.types.is_large_string(kind) else np.int32
        offsets = np.frombuffer(
            array.buffers()[1], dtype=offsets_dtype, count=array.offset + len(array) + 1
        )[array.offset :]
        longest = int(np.diff(offsets).max(initial=1))
        return 4 * longest * len(array)
    if pa.types.is_boolean(kind):
        return len(array)
    try:
        return max(kind.bit_width // 8, 1) * len(array)
    except ValueError:
        return 8 * len(array)
