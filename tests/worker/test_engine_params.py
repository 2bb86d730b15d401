"""Bad filter and compute params raise InvalidParams naming the value and the fix."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from bellhop_shared.catalog import DatasetSpec
from bellhop_shared.jsonrpc import INVALID_PARAMS, InvalidParams
from bellhop_worker.engine import Engine
from bellhop_worker.engine.conditions import MAX_WARNINGS


@pytest.fixture(scope="module")
def engine() -> Engine:
    table = pa.table(
        {
            "carrier": ["UA", "DL", "UA", "AA", None],
            "month": [1, 7, 7, 12, 7],
            "delay": [1.5, None, -3.0, 40.0, float("nan")],
            "when": pa.array([0, 3600, 7200, 10800, 14400], pa.timestamp("s")),
        }
    )
    return Engine.from_table(table, DatasetSpec(name="tiny", kind="csv"))


def rejected(call: Any, params: Any) -> InvalidParams:
    with pytest.raises(InvalidParams) as caught:
        call(params)
    assert caught.value.code == INVALID_PARAMS
    return caught.value


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ("where", ["object with named params", "str"]),
        ({"wher": {}}, ["'wher'", "valid params", "where"]),
        ({"where": ["carrier"]}, ["'where'", "expected an object", "array"]),
        ({"where": {"carrier": "UA"}}, ["'carrier'", "expected a list", "string"]),
        (
            {"where": {"carier": ["UA"]}},
            ["'carier'", "valid fields", "carrier", "month"],
        ),
        ({"where": {"month": ["July"]}}, ["'July'", "month", "whole number"]),
        ({"where": {"month": [7.5]}}, ["7.5", "month", "whole number"]),
        ({"where": {"carrier": [True]}}, ["value true", "carrier", "string"]),
        ({"exclude": 3}, ["'exclude'", "expected an object", "number 3"]),
        ({"limit": 10_001}, ["'limit'", "10001", "0..10000"]),
        ({"limit": "ten"}, ["'limit'", "'ten'", "whole number"]),
        ({"limit": True}, ["'limit'", "got true"]),
        ({"offset": -1}, ["'offset'", "-1", "0.."]),
        ({"range": {"delay": [5]}}, ["'delay'", "[min, max]", "[5]"]),
        ({"range": {"delay": ["a", 3]}}, ["'a'", "number or null"]),
        ({"range": {"delay": [10, 1]}}, ["min 10", "max 1", "swap"]),
        ({"range": {"carrier": [1, 2]}}, ["'carrier'", "not numeric", "delay"]),
        ({"range": {"when": ["yesterday", None]}}, ["'yesterday'", "ISO 8601"]),
        ({"fields": "carrier"}, ["'fields'", "list of field names"]),
        ({"fields": ["nope"]}, ["'nope'", "valid fields"]),
        ({"facets": "yes"}, ["'facets'", "true, false or a list"]),
        ({"facets": ["delay"]}, ["'delay'", "not a facet", "carrier"]),
        ({"sort": "delay"}, ["'sort'", '"field"']),
        ({"sort": {"field": "carrier"}}, ["'carrier'", "not numeric"]),
        ({"sort": {"field": "delay", "order": "up"}}, ['"up"', '"asc" or "desc"']),
    ],
)
def test_filter_rejects_bad_params(
    engine: Engine, params: Any, fragments: list[str]
) -> None:
    error = rejected(engine.filter, params)
    for fragment in fragments:
        assert fragment in error.message, (fragment, error.message)


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({"metrics": {"op": "sum"}}, ["'metrics'", "list of 1 to 100"]),
        ({"metrics": []}, ["'metrics'", "list of 1 to 100"]),
        ({"metrics": ["sum"]}, ["metrics[0]", "expected an object"]),
        (
            {"metrics": [{"op": "avg", "field": "delay"}]},
            ["'avg'", "valid ops", "mean"],
        ),
        ({"metrics": [{"op": "sum"}]}, ["Missing 'field'", "metrics[0]", "delay"]),
        (
            {"metrics": [{"op": "sum", "field": "carrier"}]},
            ["'carrier'", "not numeric"],
        ),
        ({"metrics": [{"op": "sum", "field": "delay", "x": 1}]}, ["'x'", "valid keys"]),
        (
            {"metrics": [{"op": "percentile", "field": "delay", "q": 101}]},
            ["'q' 101", "0 to 100"],
        ),
        (
            {"metrics": [{"op": "percentile", "field": "delay"}]},
            ["Missing 'q'", "0 to 100"],
        ),
        (
            {"metrics": [{"op": "histogram", "field": "delay", "bins": 0}]},
            ["'bins' 0", "1 to 1000"],
        ),
        (
            {"metrics": [{"op": "histogram", "field": "delay", "range": [5, 1]}]},
            ["'range' [5, 1]", "lo < hi"],
        ),
        ({"group_by": "delay"}, ["'delay'", "not a facet", "carrier"]),
        ({"group_by": "nope"}, ["'nope'", "valid fields"]),
        ({"where": {"month": ["July"]}}, ["'July'", "whole number"]),
    ],
)
def test_compute_rejects_bad_params(
    engine: Engine, params: Any, fragments: list[str]
) -> None:
    error = rejected(engine.compute, params)
    for fragment in fragments:
        assert fragment in error.message, (fragment, error.message)


def test_unknown_field_data_lists_valid_fields(engine: Engine) -> None:
    error = rejected(engine.filter, {"where": {"nope": [1]}})
    assert error.data["valid"] == ["carrier", "month", "delay", "when"]


def test_absent_numeric_value_warns(engine: Engine) -> None:
    result = engine.filter({"where": {"month": [13, 7]}})
    assert result["count"] == 3
    [warning] = result["warnings"]
    assert warning["value"] == 13
    assert "valid values: 1, 7, 12" in warning["message"]


def test_absent_value_warnings_are_capped(engine: Engine) -> None:
    absent = list(range(100, 1100))

    filtered = engine.filter({"where": {"month": [7, *absent]}})
    computed = engine.compute(
        {"exclude": {"month": absent}, "metrics": [{"op": "count"}]}
    )

    assert filtered["count"] == 3
    assert len(filtered["warnings"]) == MAX_WARNINGS
    assert filtered["warnings_omitted"] == len(absent) - MAX_WARNINGS
    assert [w["value"] for w in filtered["warnings"]] == absent[:MAX_WARNINGS]
    assert len(computed["warnings"]) == MAX_WARNINGS
    assert computed["warnings_omitted"] == len(absent) - MAX_WARNINGS


def test_few_warnings_have_no_omitted_count(engine: Engine) -> None:
    result = engine.filter({"where": {"month": [13]}})

    assert len(result["warnings"]) == 1
    assert "warnings_omitted" not in result


def test_absent_timestamp_warning_keeps_sent_text(engine: Engine) -> None:
    result = engine.filter({"where": {"when": ["1970-01-01T00:30:00Z"]}})

    [warning] = result["warnings"]
    assert warning["value"] == "1970-01-01T00:30:00Z"
    assert "'1970-01-01T00:30:00Z'" in warning["message"]


def test_nan_bound_error_keeps_data(engine: Engine) -> None:
    error = rejected(engine.filter, {"range": {"delay": [float("nan"), 5]}})

    assert error.data == {"setting": "range", "field": "delay", "value": "NaN"}
    assert "Invalid bound NaN" in error.message


def test_long_value_shortened_in_message(engine: Engine) -> None:
    metrics = [{"op": "count"}] * 101

    error = rejected(engine.compute, {"metrics": metrics})

    assert len(error.message) < 400
    assert '[{"op": "count"}' in error.message


def test_timestamp_accepts_iso_text(engine: Engine) -> None:
    result = engine.filter(
        {"range": {"when": ["1970-01-01T01:00:00Z", None]}, "fields": ["when"]}
    )
    assert result["count"] == 4
    assert result["rows"][0]["when"] == "1970-01-01T01:00:00Z"


def test_null_selects_missing_values(engine: Engine) -> None:
    assert engine.filter({"where": {"carrier": [None]}})["count"] == 1
    assert engine.filter({"where": {"delay": [None]}})["count"] == 2
    assert engine.filter({"exclude": {"carrier": [None]}})["count"] == 4


def test_none_params_mean_defaults(engine: Engine) -> None:
    result = engine.filter(None)
    assert result["count"] == 5
    assert result["ids"] == [0, 1, 2, 3, 4]
    assert result["rows"] == []
    assert set(result) == {"count", "ids", "rows", "facets", "took_ms"}
    assert engine.compute(None)["metrics"][0]["value"] == 5


def test_results_are_strict_json() -> None:
    table = pa.table(
        {"kind": ["a", "b", "a"], "value": [1.0, float("inf"), float("-inf")]}
    )
    engine = Engine.from_table(table, DatasetSpec(name="inf", kind="csv"))
    metrics = [
        {"op": op, "field": "value"} for op in ("sum", "mean", "min", "max", "median")
    ]
    metrics.append({"op": "histogram", "field": "value", "bins": 2})
    results = [
        engine.describe(),
        engine.filter({"fields": ["value"], "sort": {"field": "value"}}),
        engine.compute({"metrics": metrics, "group_by": "kind"}),
    ]
    for result in results:
        json.dumps(result, allow_nan=False)
    assert results[1]["ids"] == [2, 0, 1]
    assert results[1]["rows"] == [{"value": None}, {"value": 1.0}, {"value": None}]
