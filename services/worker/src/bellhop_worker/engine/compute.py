"""The `compute` method: aggregates over the matching rows, optionally per group.

Params: where, exclude, range (see conditions.py); metrics, a list (default
[{"op": "count"}], at most MAX_METRICS) of:
- {"op": "count"} rows; with "field", rows whose field is not missing.
- {"op": "sum" | "mean" | "min" | "max" | "median", "field": numeric field}
- {"op": "percentile", "field": f, "q": 0..100} (linear interpolation, as
  numpy.percentile's default).
- {"op": "histogram", "field": f, "bins": 1..1000 (default 20),
  "range": [lo, hi] (default the min and max over all matching rows)}.
group_by: a facet field; the same metrics per value that has matching rows.

Result:
  {"count": n,
   "metrics": [{"op", "field", "value", "missing"} (+ "q" or "bins")],
   "groups": {value: {"count": n, "metrics": [...]}},   only with group_by
   "group_missing": n,  matching rows without a group value, only with group_by
   "took_ms": float}
plus "warnings" as in filter. `missing` counts matching rows whose field is
missing or NaN; they are skipped. A histogram's value is {"edges": [bins + 1
floats], "counts": [bins ints], "outside": rows out of range}. With no valid
values, sum is 0 and mean, min, max, median and percentile are null.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from bellhop_shared.jsonrpc import InvalidParams

from bellhop_worker.engine import bitset
from bellhop_worker.engine.columns import Column, finite_or_none, to_json
from bellhop_worker.engine.conditions import select_rows
from bellhop_worker.engine.index import Index, list_names
from bellhop_worker.engine.params import (
    CONDITION_KEYS,
    as_params,
    check_keys,
    json_text,
)

OPS = ("count", "sum", "mean", "min", "max", "median", "percentile", "histogram")
COMPUTE_KEYS = (*CONDITION_KEYS, "metrics", "group_by")
MAX_METRICS = 100
DEFAULT_BINS = 20
MAX_BINS = 1000
_METRIC_KEYS = {"op", "field", "q", "bins", "range"}


@dataclass(frozen=True)
class Metric:
    """One validated metric request."""

    op: str
    column: Column | None
    q: float | None = None
    bins: int = DEFAULT_BINS
    bounds: tuple[float, float] | None = None


def run_compute(index: Index, raw_params: Any) -> dict[str, Any]:
    """Run one compute request and return its result."""
    started = time.perf_counter()
    params = as_params(raw_params, "compute")
    check_keys(params, COMPUTE_KEYS, "compute")
    metrics = [
        _parse_metric(index, item, n) for n, item in enumerate(_metric_list(params))
    ]
    group_column = _group_column(index, params.get("group_by"))

    selection = select_rows(index, params)
    metrics = [_with_default_bounds(metric, selection.bits) for metric in metrics]
    result: dict[str, Any] = evaluate(selection.bits, metrics)
    if group_column is not None:
        result["groups"] = _groups(selection.bits, group_column, metrics)
        assert group_column.missing_bits is not None
        result["group_missing"] = bitset.popcount(
            selection.bits & group_column.missing_bits
        )
    selection.add_to(result)
    result["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return result


def evaluate(bits: np.ndarray, metrics: list[Metric]) -> dict[str, Any]:
    """Return {"count", "metrics"} over the rows in bits."""
    count = bitset.popcount(bits)
    cache: dict[str, np.ndarray] = {}
    results = [_metric_result(bits, count, metric, cache) for metric in metrics]
    return {"count": count, "metrics": results}


def _groups(bits: np.ndarray, column: Column, metrics: list[Metric]) -> dict[str, Any]:
    assert column.bitsets is not None and column.facet_keys is not None
    groups: dict[str, Any] = {}
    for code, key in enumerate(column.facet_keys):
        group_bits = bits & column.bitsets[code]
        if group_bits.any():
            groups[key] = evaluate(group_bits, metrics)
    return groups


def _metric_result(
    bits: np.ndarray, count: int, metric: Metric, cache: dict[str, np.ndarray]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "op": metric.op,
        "field": None,
        "value": count,
        "missing": 0,
    }
    if metric.column is None:
        return result
    values = _valid_values(bits, metric.column, cache)
    result["field"] = metric.column.name
    result["missing"] = count - len(values)
    if metric.q is not None:
        result["q"] = metric.q
    if metric.op == "histogram":
        result["bins"] = metric.bins
    # Infinite values make NaN in sums and interpolation; those become null.
    with np.errstate(invalid="ignore", over="ignore"):
        result["value"] = _aggregate(metric, values)
    return result


def _valid_values(
    bits: np.ndarray, column: Column, cache: dict[str, np.ndarray]
) -> np.ndarray:
    """Return column's non-missing values in bits; codes if it is not numeric."""
    if column.name not in cache:
        if column.values is not None and column.valid_bits is not None:
            cache[column.name] = column.values[bitset.rows(bits & column.valid_bits)]
        else:
            assert column.codes is not None
            codes = column.codes[bitset.rows(bits)]
            cache[column.name] = codes[codes != column.missing_code]
    return cache[column.name]


def _aggregate(metric: Metric, values: np.ndarray) -> Any:
    assert metric.column is not None
    if metric.op == "count":
        return len(values)
    if metric.op == "sum":
        return _sum(values)
    if metric.op == "histogram":
        return _histogram(values, metric)
    if len(values) == 0:
        return None
    if metric.op == "mean":
        return finite_or_none(float(np.mean(values, dtype=np.float64)))
    if metric.op in ("min", "max"):
        extreme = values.min() if metric.op == "min" else values.max()
        return to_json(metric.column.type, extreme.item())
    q = 50.0 if metric.op == "median" else metric.q
    return finite_or_none(float(np.percentile(values, q)))


def _sum(values: np.ndarray) -> int | float:
    if values.dtype.kind in "iub":
        return int(values.sum(dtype=np.int64))
    return finite_or_none(float(values.sum(dtype=np.float64)))


def _histogram(values: np.ndarray, metric: Metric) -> dict[str, Any]:
    if metric.bounds is None:
        return {"edges": [], "counts": [], "outside": 0}
    low, high = metric.bounds
    counts, edges = np.histogram(values, bins=metric.bins, range=(low, high))
    inside = int(counts.sum())
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "outside": len(values) - inside,
    }


def _with_default_bounds(metric: Metric, bits: np.ndarray) -> Metric:
    """Give a histogram without a range the min and max of all matching rows."""
    if metric.op != "histogram" or metric.bounds is not None:
        return metric
    assert metric.column is not None
    values = _valid_values(bits, metric.column, {})
    if len(values) == 0:
        return metric
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if len(finite) == 0:
        return metric
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    return Metric(metric.op, metric.column, metric.q, metric.bins, (low, high))


def _metric_list(params: dict[str, Any]) -> list[Any]:
    metrics = params.get("metrics")
    if metrics is None:
        return [{"op": "count"}]
    if not isinstance(metrics, list) or not 1 <= len(metrics) <= MAX_METRICS:
        raise InvalidParams(
            f"Invalid 'metrics': expected a list of 1 to {MAX_METRICS} objects such as "
            f'[{{"op": "mean", "field": "dep_delay"}}], got {json_text(metrics)}.',
            {"param": "metrics"},
        )
    return metrics


def _parse_metric(index: Index, item: Any, position: int) -> Metric:
    where = f"metrics[{position}]"
    if not isinstance(item, dict):
        raise InvalidParams(
            f"Invalid {where}: expected an object such as "
            f'{{"op": "mean", "field": "dep_delay"}}, got {json_text(item)}.',
            {"param": where},
        )
    unknown = sorted(set(item) - _METRIC_KEYS)
    if unknown:
        raise InvalidParams(
            f"Unknown key {unknown[0]!r} in {where}; valid keys: "
            f"{list_names(sorted(_METRIC_KEYS))}.",
            {"param": where},
        )
    op = item.get("op")
    if op not in OPS:
        raise InvalidParams(
            f"Invalid op {json_text(op)} in {where}; valid ops: "
            f"{list_names(list(OPS))}.",
            {"param": where, "valid": list(OPS)},
        )
    return Metric(
        op=op,
        column=_metric_column(index, item, op, where),
        q=_percentile_q(item, op, where),
        bins=_bins(item, where),
        bounds=_histogram_bounds(item, where),
    )


def _metric_column(
    index: Index, item: dict[str, Any], op: str, where: str
) -> Column | None:
    if op == "count":
        name = item.get("field")
        return None if name is None else index.column(name, where)
    if "field" not in item:
        raise InvalidParams(
            f"Missing 'field' in {where}: op {op!r} needs a numeric field; numeric "
            f"fields: {list_names(index.numeric_names)}.",
            {"param": where, "valid": index.numeric_names},
        )
    return index.numeric_column(item["field"], where)


def _percentile_q(item: dict[str, Any], op: str, where: str) -> float | None:
    if op != "percentile":
        return None
    q = item.get("q")
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0 <= q <= 100:
        problem = "Missing 'q'" if q is None else f"Invalid 'q' {json_text(q)}"
        raise InvalidParams(
            f"{problem} in {where}: a percentile needs q, a number from 0 to 100, "
            "such as 95.",
            {"param": where},
        )
    return float(q)


def _bins(item: dict[str, Any], where: str) -> int:
    bins = item.get("bins", DEFAULT_BINS)
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise InvalidParams(
            f"Invalid 'bins' {json_text(bins)} in {where}: use a whole number "
            f"from 1 to {MAX_BINS}.",
            {"param": where},
        )
    return bins


def _histogram_bounds(item: dict[str, Any], where: str) -> tuple[float, float] | None:
    bounds = item.get("range")
    if bounds is None:
        return None
    is_pair = isinstance(bounds, list) and len(bounds) == 2
    numbers = is_pair and all(
        isinstance(b, int | float) and not isinstance(b, bool) and np.isfinite(b)
        for b in bounds
    )
    if not numbers or bounds[0] >= bounds[1]:
        raise InvalidParams(
            f"Invalid 'range' {json_text(bounds)} in {where}: a histogram range "
            "is [lo, hi] with finite numbers and lo < hi, such as [0, 120].",
            {"param": where},
        )
    return float(bounds[0]), float(bounds[1])


def _group_column(index: Index, name: Any) -> Column | None:
    if name is None:
        return None
    return index.facet_column(name, "group_by")
