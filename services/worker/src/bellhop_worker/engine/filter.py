"""The `filter` method: matching rows, a page of their ids and facet counts.

Params (all optional):
- where, exclude, range: see conditions.py.
- limit: rows per page, default 50, 0..10000. offset: rows to skip, default 0.
- sort: {"field": numeric field, "order": "asc" | "desc"}; without it the
  page follows row order.
- fields: columns to return for each row of the page, a list of names or "*"
  for all; default none, so `rows` is empty unless asked for.
- facets: true (default) for every facet field, false for none, or a list of
  facet field names.

Result: {"count", "ids", "rows", "facets", "took_ms"}, plus "warnings" when a
listed value matches nothing. `rows[i]` is an object of the requested fields
for the row `ids[i]`. `facets` maps each facet field to {value: count} over the
matching rows for every value, zeros included, keys as strings; rows with a
missing value are not in those counts.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from bellhop_shared.jsonrpc import InvalidParams

from bellhop_worker.engine import bitset
from bellhop_worker.engine.conditions import select_rows
from bellhop_worker.engine.facets import FacetCounter
from bellhop_worker.engine.index import Index, list_names
from bellhop_worker.engine.params import (
    CONDITION_KEYS,
    as_params,
    check_keys,
    integer,
    json_text,
)
from bellhop_worker.engine.sort import sorted_page

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000
MAX_OFFSET = 2**53
FILTER_KEYS = (*CONDITION_KEYS, "limit", "offset", "sort", "fields", "facets")


def run_filter(index: Index, raw_params: Any) -> dict[str, Any]:
    """Run one filter request and return its result."""
    started = time.perf_counter()
    params = as_params(raw_params, "filter")
    check_keys(params, FILTER_KEYS, "filter")
    limit = integer(params, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
    offset = integer(params, "offset", 0, 0, MAX_OFFSET)
    fields = _fields(index, params.get("fields"))
    facet_names = _facet_names(index, params.get("facets", True))
    sort = _sort(index, params.get("sort"))

    selection = select_rows(index, params)
    count = bitset.popcount(selection.bits)
    counter = FacetCounter(selection.bits, count, index.all_rows, index.n_rows)
    facet_columns = [index.columns[name] for name in facet_names]
    facets = counter.all_json(facet_columns, index.facets)
    known_rows = counter.selected_rows()
    page = _page(index, selection.bits, sort, offset, limit, count, known_rows)
    result: dict[str, Any] = {
        "count": count,
        "ids": index.row_ids(page),
        "rows": _rows(index, page, fields),
        "facets": facets,
    }
    selection.add_to(result)
    result["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return result


def _page(
    index: Index,
    bits: np.ndarray,
    sort: tuple[str, bool] | None,
    offset: int,
    limit: int,
    count: int,
    known_rows: np.ndarray | None,
) -> np.ndarray:
    """Return the row numbers of the page, which starts at offset in the order.

    bits contains count rows. known_rows, when not None, are all of them,
    ascending.
    """
    if sort is not None:
        if limit == 0:
            return np.zeros(0, dtype=np.int64)
        name, descending = sort
        return sorted_page(bits, index.columns[name], descending, offset, limit)
    if known_rows is not None:
        return known_rows[offset : offset + limit]
    if count == index.n_rows:
        return np.arange(offset, min(offset + limit, count), dtype=np.int64)
    return bitset.select_page(bits, offset, limit)


def _rows(index: Index, page: np.ndarray, fields: list[str]) -> list[dict[str, Any]]:
    if not fields:
        return []
    by_field = {name: index.columns[name].row_values(page) for name in fields}
    return [
        {name: values[position] for name, values in by_field.items()}
        for position in range(len(page))
    ]


def _fields(index: Index, value: Any) -> list[str]:
    if value is None:
        return []
    if value == "*":
        return list(index.columns)
    if not isinstance(value, list):
        raise InvalidParams(
            f"Invalid 'fields': expected a list of field names or \"*\" for all, "
            f"got {json_text(value)}.",
            {"param": "fields"},
        )
    return [index.column(name, "fields").name for name in value]


def _facet_names(index: Index, value: Any) -> list[str]:
    if value is True:
        return index.facet_names
    if value is False or value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParams(
            f"Invalid 'facets': expected true, false or a list of facet field names, "
            f"got {json_text(value)}.",
            {"param": "facets"},
        )
    return [index.facet_column(name, "facets").name for name in value]


def _sort(index: Index, value: Any) -> tuple[str, bool] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "field" not in value:
        raise InvalidParams(
            'Invalid \'sort\': expected {"field": <numeric field>, "order": "asc" or '
            f'"desc"}}, got {json_text(value)}.',
            {"param": "sort"},
        )
    column = index.numeric_column(value["field"], "sort")
    order = value.get("order", "asc")
    if order not in ("asc", "desc") or set(value) - {"field", "order"}:
        raise InvalidParams(
            f'Invalid \'sort\': order must be "asc" or "desc" and the only keys are '
            f"field and order, got {json_text(value)}; numeric fields: "
            f"{list_names(index.numeric_names)}.",
            {"param": "sort"},
        )
    return column.name, order == "desc"
