"""Turn a loaded pyarrow table into engine columns: dictionary codes, facet
bitsets and numeric arrays.

Facet fields are the catalog's `facets` list when it has one; otherwise every
int, string or bool column with at most MAX_AUTO_FACET_VALUES distinct values.
Numeric fields are the catalog's `numeric` list when it has one; otherwise
every int, float, decimal, date or timestamp column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bellhop_shared.catalog import DatasetSpec

from bellhop_worker.engine import bitset
from bellhop_worker.engine.columns import Column, ValueType
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


def build_columns(
    table: pa.Table, spec: DatasetSpec, progress: Callable[[float], None]
) -> BuiltTable:
    """Build every column of table; call progress(0..1) after each one."""
    _check_declared(table, spec)
    columns: dict[str, Column] = {}
    raw_bytes = 0
    names = table.column_names
    for position, name in enumerate(names):
        array = table.column(name).combine_chunks()
        if isinstance(array, pa.ChunkedArray):
            array = array.chunk(0) if array.num_chunks else pa.array([], array.type)
        columns[name] = build_column(name, array, spec)
        raw_bytes += raw_column_bytes(array)
        progress((position + 1) / len(names))
    return BuiltTable(columns=columns, n_rows=table.num_rows, raw_bytes=raw_bytes)


def build_column(name: str, array: pa.Array, spec: DatasetSpec) -> Column:
    """Build one column from a pyarrow array, following spec's declarations."""
    array, value_type = normalize(name, array, spec)
    column = Column(name=name, type=value_type, n_rows=len(array))
    if _wants_numeric(name, value_type, spec):
        column.values, column.valid_bits = numeric_values(array, value_type)
    if value_type == "float" and not _is_declared_facet(name, spec):
        return column
    _add_codes(column, array, spec)
    return column


def _add_codes(column: Column, array: pa.Array, spec: DatasetSpec) -> None:
    name = column.name
    declared = _is_declared_facet(name, spec)
    is_auto_facet = spec.facets is None and column.type in ("int", "string", "bool")
    if column.is_numeric and not declared and not is_auto_facet:
        return
    codes, dictionary = dictionary_codes(array)
    if declared and len(dictionary) > MAX_DECLARED_FACET_VALUES:
        raise DatasetError(
            f"Facet field {name!r} has {len(dictionary)} distinct values, more than "
            f"the {MAX_DECLARED_FACET_VALUES} a facet may have; remove it from the "
            "catalog's facets list."
        )
    column.codes, column.dictionary = codes, dictionary
    if declared or (is_auto_facet and len(dictionary) <= MAX_AUTO_FACET_VALUES):
        column.bitsets = bitset.from_codes(codes, len(dictionary))
        column.missing_bits = bitset.from_bool(codes == len(dictionary))


def _is_declared_facet(name: str, spec: DatasetSpec) -> bool:
    return spec.facets is not None and name in spec.facets


def _wants_numeric(name: str, value_type: ValueType, spec: DatasetSpec) -> bool:
    if spec.numeric is not None:
        return name in spec.numeric
    return value_type in ("int", "float", "timestamp")


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
                f"Dataset {spec.name!r} declares {setting} {unknown} that the source "
                f"does not have; its columns are {sorted(names)}. Fix the catalog entry."
            )


def normalize(
    name: str, array: pa.Array, spec: DatasetSpec
) -> tuple[pa.Array, ValueType]:
    """Cast array to one of the engine's value types and return both."""
    kind = array.type
    if isinstance(kind, pa.DictionaryType):
        if _is_string_type(kind.value_type) and _has_unique_dictionary(array):
            return array, "string"
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_integer(kind):
        return array.cast(pa.int64()), "int"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return array.cast(pa.float64()), "float"
    if pa.types.is_boolean(kind):
        return array, "bool"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return array.cast(pa.timestamp("s")).cast(pa.int64()), "timestamp"
    if spec.numeric is not None and name in spec.numeric:
        return _parse_numeric(name, array), "float"
    return _to_string(array), "string"


def _is_string_type(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _has_unique_dictionary(array: pa.DictionaryArray) -> bool:
    return len(pc.unique(array.dictionary)) == len(array.dictionary)


def _parse_numeric(name: str, array: pa.Array) -> pa.Array:
    try:
        return pc.cast(_to_string(array), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DatasetError(
            f"Column {name!r} is declared numeric but holds non-numeric text "
            f"({exc}); remove it from the catalog's numeric list or fix the data."
        ) from exc


def _to_string(array: pa.Array) -> pa.Array:
    try:
        return array.cast(pa.string())
    except pa.ArrowNotImplementedError:
        import json

        texts = [
            None if v is None else json.dumps(v, default=str) for v in array.to_pylist()
        ]
        return pa.array(texts, pa.string())


def numeric_values(
    array: pa.Array, value_type: ValueType
) -> tuple[np.ndarray, np.ndarray]:
    """Return the values as the narrowest fitting numpy dtype, and the valid bitset."""
    valid = np.ones(len(array), dtype=np.bool_)
    if array.null_count:
        valid = ~np.asarray(array.is_null())
        array = array.fill_null(0 if value_type != "float" else np.nan)
    if value_type == "bool":
        values = np.asarray(array, dtype=np.int8)
    else:
        values = array.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        valid &= ~np.isnan(values)
    elif values.dtype.kind in "iu" and len(values):
        values = values.astype(_narrowest_int(values), copy=False)
    return values, bitset.from_bool(valid)


def _narrowest_int(values: np.ndarray) -> np.dtype:
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def dictionary_codes(array: pa.Array) -> tuple[np.ndarray, list]:
    """Encode array as codes into its sorted distinct values; nulls get len(values)."""
    if isinstance(array.type, pa.DictionaryType):
        encoded = array
    else:
        encoded = pc.dictionary_encode(array, null_encoding="mask")
    distinct = encoded.dictionary
    order = np.asarray(pc.sort_indices(distinct), dtype=np.int64)
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = len(order)
    raw = np.asarray(encoded.indices.fill_null(len(order)), dtype=np.int64)
    dtype = (
        np.uint8 if len(order) < 255 else np.uint16 if len(order) < 65535 else np.int32
    )
    codes = rank[raw].astype(dtype)
    return codes, distinct.take(pa.array(order)).to_pylist()


def raw_column_bytes(array: pa.Array) -> int:
    """Return the bytes of the column as a numpy array of its natural dtype.

    Numbers and timestamps take their own width, strings a fixed-width numpy
    unicode array (4 bytes per character of the longest value).
    """
    kind = array.type
    if _is_string_type(kind):
        longest = pc.max(pc.utf8_length(array)).as_py() or 0
        return 4 * max(longest, 1) * len(array)
    if pa.types.is_boolean(kind):
        return len(array)
    if isinstance(kind, pa.DictionaryType):
        if not _is_string_type(kind.value_type):
            return raw_column_bytes(array.dictionary_decode())
        longest = pc.max(pc.utf8_length(array.dictionary)).as_py() or 0
        return 4 * max(longest, 1) * len(array)
    try:
        return max(kind.bit_width // 8, 1) * len(array)
    except ValueError:
        return 8 * len(array)
