"""Property tests: the engine agrees with a row-by-row Python evaluation.

Hypothesis draws small tables (with missing values, NaN and ties) and random
filters; every answer is recomputed here from plain Python lists.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from typing import Any

import pyarrow as pa
import pytest
from bellhop_shared.catalog import DatasetSpec
from bellhop_worker.engine import Engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LABELS = ["a", "b", "c", "d"]
FACETS = ("s", "k", "t")
NUMERIC = ("x", "k")
PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Row = dict[str, Any]


@st.composite
def tables(draw: st.DrawFn) -> list[Row]:
    n_rows = draw(st.integers(0, 120))
    row = st.fixed_dictionaries(
        {
            "s": st.none() | st.sampled_from(LABELS),
            "k": st.none() | st.integers(0, 5),
            "x": st.none()
            | st.just(math.nan)
            | st.integers(-20, 20).map(lambda n: n / 2),
            "t": st.none() | st.booleans(),
        }
    )
    return draw(st.lists(row, min_size=n_rows, max_size=n_rows))


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    params: dict[str, Any] = {}
    value_choices = {
        "s": st.none() | st.sampled_from([*LABELS, "zz"]),
        "k": st.none() | st.integers(0, 7) | st.integers(0, 7).map(str),
        "t": st.none() | st.booleans(),
        "x": st.integers(-20, 20).map(lambda n: n / 2),
    }
    for setting in ("where", "exclude"):
        fields = draw(st.lists(st.sampled_from(list(value_choices)), unique=True))
        if fields:
            params[setting] = {
                f: draw(st.lists(value_choices[f], max_size=3)) for f in fields
            }
    if draw(st.booleans()):
        field = draw(st.sampled_from(NUMERIC))
        low = draw(st.none() | st.integers(-10, 10))
        high = draw(st.none() | st.integers(-10, 10))
        if low is not None and high is not None and low > high:
            low, high = high, low
        params["range"] = {field: [low, high]}
    return params


def build_engine(rows: list[Row]) -> Engine:
    table = pa.table(
        {
            "s": pa.array([r["s"] for r in rows], pa.string()),
            "k": pa.array([r["k"] for r in rows], pa.int64()),
            "x": pa.array([r["x"] for r in rows], pa.float64()),
            "t": pa.array([r["t"] for r in rows], pa.bool_()),
        }
    )
    return Engine.from_table(table, DatasetSpec(name="property", kind="csv"))


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def same_value(field: str, cell: Any, wanted: Any) -> bool:
    if wanted is None:
        return is_missing(cell)
    if is_missing(cell):
        return False
    return int(wanted) == cell if field == "k" else wanted == cell


def naive_match(row: Row, params: dict[str, Any]) -> bool:
    for field, values in params.get("where", {}).items():
        if not any(same_value(field, row[field], v) for v in values):
            return False
    for field, values in params.get("exclude", {}).items():
        if any(same_value(field, row[field], v) for v in values):
            return False
    for field, (low, high) in params.get("range", {}).items():
        cell = row[field]
        if is_missing(cell):
            return False
        if (low is not None and cell < low) or (high is not None and cell > high):
            return False
    return True


def facet_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def naive_facets(rows: list[Row], matched: list[int]) -> dict[str, dict[str, int]]:
    facets = {}
    for field in FACETS:
        distinct = sorted({r[field] for r in rows if r[field] is not None})
        counts = {facet_key(v): 0 for v in distinct}
        for n in matched:
            if rows[n][field] is not None:
                counts[facet_key(rows[n][field])] += 1
        facets[field] = counts
    return facets


def naive_order(rows: list[Row], matched: list[int], sort: dict[str, str]) -> list[int]:
    field, descending = sort["field"], sort["order"] == "desc"
    valid = [n for n in matched if not is_missing(rows[n][field])]
    missing = [n for n in matched if is_missing(rows[n][field])]
    sign = -1 if descending else 1
    return sorted(valid, key=lambda n: (sign * rows[n][field], n)) + missing


@PROPERTY_SETTINGS
@given(rows=tables(), params=conditions(), data=st.data())
def test_filter_matches_naive(
    rows: list[Row], params: dict[str, Any], data: Any
) -> None:
    engine = build_engine(rows)
    params["offset"] = data.draw(st.integers(0, len(rows) + 3))
    params["limit"] = data.draw(st.integers(0, 25))
    sort = data.draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "field": st.sampled_from(NUMERIC),
                "order": st.sampled_from(["asc", "desc"]),
            }
        )
    )
    if sort is not None:
        params["sort"] = sort

    result = engine.filter(params)

    matched = [n for n, row in enumerate(rows) if naive_match(row, params)]
    ordered = matched if sort is None else naive_order(rows, matched, sort)
    offset, limit = params["offset"], params["limit"]
    assert result["count"] == len(matched)
    assert result["ids"] == ordered[offset : offset + limit]
    assert result["facets"] == naive_facets(rows, matched)


def naive_percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = q / 100 * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def naive_metric(values: list[Any], op: str, q: float) -> Any:
    present = [v for v in values if not is_missing(v)]
    if op == "count":
        return len(present)
    if op == "sum":
        return sum(present)
    if not present:
        return None
    if op == "mean":
        return sum(present) / len(present)
    if op == "min":
        return min(present)
    if op == "max":
        return max(present)
    return naive_percentile(present, 50.0 if op == "median" else q)


def naive_histogram(values: list[Any], bins: int, low: float, high: float) -> list[int]:
    edges = [low + (high - low) * i / bins for i in range(bins + 1)]
    counts = [0] * bins
    for value in values:
        if is_missing(value) or not low <= value <= high:
            continue
        counts[min(bisect_right(edges, value) - 1, bins - 1)] += 1
    return counts


METRICS = [
    {"op": "count"},
    {"op": "count", "field": "x"},
    {"op": "sum", "field": "x"},
    {"op": "sum", "field": "k"},
    {"op": "mean", "field": "x"},
    {"op": "min", "field": "x"},
    {"op": "max", "field": "k"},
    {"op": "median", "field": "x"},
    {"op": "percentile", "field": "k", "q": 90},
    {"op": "percentile", "field": "x", "q": 12.5},
]


def check_metrics(rows: list[Row], matched: list[int], result: dict[str, Any]) -> None:
    assert result["count"] == len(matched)
    for metric, got in zip(METRICS, result["metrics"], strict=True):
        field = metric.get("field")
        if field is None:
            assert got["value"] == len(matched)
            continue
        values = [rows[n][field] for n in matched]
        expected = naive_metric(values, metric["op"], metric.get("q", 0.0))
        assert got["missing"] == sum(is_missing(v) for v in values), metric
        if expected is None:
            assert got["value"] is None, metric
        else:
            assert got["value"] == pytest.approx(expected, rel=1e-9, abs=1e-9), metric


@PROPERTY_SETTINGS
@given(rows=tables(), params=conditions())
def test_compute_matches_naive(rows: list[Row], params: dict[str, Any]) -> None:
    engine = build_engine(rows)
    result = engine.compute({**params, "metrics": METRICS, "group_by": "s"})

    matched = [n for n, row in enumerate(rows) if naive_match(row, params)]
    check_metrics(rows, matched, result)
    expected_groups = sorted(
        {rows[n]["s"] for n in matched if rows[n]["s"] is not None}
    )
    assert sorted(result["groups"]) == expected_groups
    for label, group in result["groups"].items():
        check_metrics(rows, [n for n in matched if rows[n]["s"] == label], group)
    assert result["group_missing"] == sum(rows[n]["s"] is None for n in matched)


@PROPERTY_SETTINGS
@given(rows=tables(), bins=st.integers(1, 12), bounds=st.integers(-12, 12))
def test_histogram_matches_naive(rows: list[Row], bins: int, bounds: int) -> None:
    engine = build_engine(rows)
    low, high = -abs(bounds) - 0.5, abs(bounds) + 0.25
    metric = {"op": "histogram", "field": "x", "bins": bins, "range": [low, high]}
    [got] = engine.compute({"metrics": [metric]})["metrics"]

    values = [row["x"] for row in rows]
    expected = naive_histogram(values, bins, low, high)
    present = [v for v in values if not is_missing(v)]
    assert got["value"]["counts"] == expected
    assert got["value"]["outside"] == len(present) - sum(expected)
    assert got["missing"] == len(values) - len(present)


def random_rows(seed: int, n_rows: int) -> list[Row]:
    """Return n_rows rows like tables() draws, plus "n", the row number."""
    rng = random.Random(seed)
    return [
        {
            "s": rng.choice([None, *LABELS]),
            "k": rng.choice([None, *range(6)]),
            "x": rng.choice([None, math.nan, rng.randint(-20, 20) / 2]),
            "t": rng.choice([None, True, False]),
            "n": n,
        }
        for n in range(n_rows)
    ]


def build_numbered_engine(rows: list[Row]) -> Engine:
    """Build an engine whose facet "n" has a value per row.

    With one value per row, the bincount kernel counts the group of "n" at
    every selection size, while the group of the small fields goes to the
    popcount kernel once the selection has more than a few dozen rows, so
    most selections run both kernels.
    """
    table = pa.table(
        {
            "s": pa.array([r["s"] for r in rows], pa.string()),
            "k": pa.array([r["k"] for r in rows], pa.int64()),
            "x": pa.array([r["x"] for r in rows], pa.float64()),
            "t": pa.array([r["t"] for r in rows], pa.bool_()),
            "n": pa.array([r["n"] for r in rows], pa.int64()),
        }
    )
    spec = DatasetSpec(name="numbered", kind="csv", facets=[*FACETS, "n"])
    return Engine.from_table(table, spec)


def numbered_facets(rows: list[Row], matched: list[int]) -> dict[str, Any]:
    facets: dict[str, Any] = naive_facets(rows, matched)
    facets["n"] = {str(n): 0 for n in range(len(rows))}
    for n in matched:
        facets["n"][str(n)] = 1
    return facets


@st.composite
def selection_sizes(draw: st.DrawFn, n_rows: int) -> int:
    """Draw how many rows a block selects.

    Many draws are sizes at the edges of complement counting: none, one,
    half, just over half, all but one and all rows.
    """
    edges = sorted({0, 1, n_rows // 2, n_rows // 2 + 1, n_rows - 1, n_rows})
    edges = [size for size in edges if 0 <= size <= n_rows]
    return draw(st.sampled_from(edges) | st.integers(0, n_rows))


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(0, 700),
    extra=st.none() | conditions(),
    data=st.data(),
)
def test_facets_any_selection_size(
    seed: int, n_rows: int, extra: dict[str, Any] | None, data: Any
) -> None:
    rows = random_rows(seed, n_rows)
    engine = build_numbered_engine(rows)
    size = data.draw(selection_sizes(n_rows))
    start = data.draw(st.integers(0, n_rows - size))
    params: dict[str, Any] = dict(extra or {})
    block = [start, start + size - 1] if size else [-1, -1]
    params["range"] = {**params.get("range", {}), "n": block}

    result = engine.filter({**params, "limit": 0})

    matched = [n for n, row in enumerate(rows) if naive_match(row, params)]
    assert result["count"] == len(matched)
    assert result["facets"] == numbered_facets(rows, matched)


@pytest.mark.parametrize("params", [{}, {"where": {}}, {"exclude": {"s": []}}])
def test_facets_every_row_filters(params: dict[str, Any]) -> None:
    rows = random_rows(7, 500)
    engine = build_numbered_engine(rows)

    result = engine.filter(params)

    assert result["count"] == len(rows)
    assert result["facets"] == numbered_facets(rows, list(range(len(rows))))
    assert result["facets"] == {
        name: field["values"]
        for name, field in engine.describe()["fields"].items()
        if "values" in field
    }


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(0, 400),
    params=conditions(),
    names=st.lists(st.sampled_from([*FACETS, "n"]), unique=True),
)
def test_facet_subsets_match_naive(
    seed: int, n_rows: int, params: dict[str, Any], names: list[str]
) -> None:
    rows = random_rows(seed, n_rows)
    engine = build_numbered_engine(rows)

    result = engine.filter({**params, "facets": names, "limit": 0})

    matched = [n for n, row in enumerate(rows) if naive_match(row, params)]
    expected = numbered_facets(rows, matched)
    assert list(result["facets"]) == names
    assert result["facets"] == {name: expected[name] for name in names}
