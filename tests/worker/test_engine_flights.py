"""The engine on the real flights table, checked against Python's csv module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bellhop_shared.catalog import load_catalog, resolve
from bellhop_worker.engine import Engine
from flights_csv import flights_rows, matching_rows, value_counts

ACCEPTANCE_WHERE = {"carrier": ["UA", "DL"], "origin": ["JFK"], "month": [7]}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    spec = resolve("flights", load_catalog())
    assert spec is not None
    yield Engine.load(spec, None, lambda fraction: None)


def test_acceptance_filter_count(engine: Engine) -> None:
    result = engine.filter({"where": ACCEPTANCE_WHERE})
    expected = matching_rows(ACCEPTANCE_WHERE)
    assert result["count"] == len(expected)
    assert result["count"] > 0


def test_acceptance_filter_facet_counts(engine: Engine) -> None:
    result = engine.filter({"where": ACCEPTANCE_WHERE})
    expected = matching_rows(ACCEPTANCE_WHERE)
    for field in ("origin", "carrier", "dest", "hour"):
        nonzero = {k: v for k, v in result["facets"][field].items() if v}
        assert nonzero == value_counts(expected, field), field


def test_facets_list_every_value(engine: Engine) -> None:
    result = engine.filter({"where": ACCEPTANCE_WHERE})
    all_carriers = set(value_counts(list(flights_rows()), "carrier"))
    assert set(result["facets"]["carrier"]) == all_carriers
    assert result["facets"]["carrier"]["AA"] == 0
    assert result["facets"]["origin"]["EWR"] == 0


def test_acceptance_filter_ids_are_row_numbers(engine: Engine) -> None:
    rows = flights_rows()
    result = engine.filter({"where": ACCEPTANCE_WHERE, "limit": 20, "offset": 5})
    assert len(result["ids"]) == 20
    assert result["ids"] == sorted(result["ids"])
    for row_id in result["ids"]:
        row = rows[row_id]
        assert row["origin"] == "JFK"
        assert row["carrier"] in ("UA", "DL")
        assert row["month"] == "7"


def test_page_matches_csv_order(engine: Engine) -> None:
    rows = flights_rows()
    expected = [n for n, row in enumerate(rows) if row["dest"] == "SFO"][100:130]
    result = engine.filter({"where": {"dest": ["SFO"]}, "offset": 100, "limit": 30})
    assert result["ids"] == expected


def test_rows_return_requested_fields(engine: Engine) -> None:
    rows = flights_rows()
    result = engine.filter(
        {"where": {"origin": ["LGA"]}, "limit": 5, "fields": ["tailnum", "dep_delay"]}
    )
    for row_id, row in zip(result["ids"], result["rows"], strict=True):
        source = rows[row_id]
        assert row["tailnum"] == (
            None if source["tailnum"] == "NA" else source["tailnum"]
        )
        expected_delay = (
            None if source["dep_delay"] == "NA" else int(source["dep_delay"])
        )
        assert row["dep_delay"] == expected_delay


def test_unfiltered_count_is_every_flight(engine: Engine) -> None:
    result = engine.filter({})
    assert result["count"] == len(flights_rows()) == 336_776
    assert sum(result["facets"]["origin"].values()) == 336_776


def test_string_and_int_values_match_alike(engine: Engine) -> None:
    as_int = engine.filter({"where": {"month": [7]}, "facets": False})
    as_text = engine.filter({"where": {"month": ["7"]}, "facets": False})
    assert as_int["count"] == as_text["count"] == len(matching_rows({"month": ["7"]}))


def test_absent_value_is_reported(engine: Engine) -> None:
    result = engine.filter({"where": {"carrier": ["ZZ", "UA"]}})
    assert result["count"] == len(matching_rows({"carrier": ["UA"]}))
    [warning] = result["warnings"]
    assert warning["field"] == "carrier"
    assert warning["value"] == "ZZ"
    assert "'ZZ'" in warning["message"]
    assert "UA" in warning["message"]


def test_range_filter_matches_csv(engine: Engine) -> None:
    result = engine.filter({"range": {"dep_delay": [60, 120]}, "facets": ["origin"]})
    expected = [
        row
        for row in flights_rows()
        if row["dep_delay"] != "NA" and 60 <= int(row["dep_delay"]) <= 120
    ]
    assert result["count"] == len(expected)
    assert result["facets"]["origin"] == value_counts(expected, "origin")


def test_exclude_matches_csv(engine: Engine) -> None:
    result = engine.filter({"exclude": {"origin": ["JFK", "EWR"]}, "facets": False})
    assert result["count"] == len(matching_rows({"origin": ["LGA"]}))


def test_sort_desc_returns_largest_delays(engine: Engine) -> None:
    result = engine.filter(
        {
            "sort": {"field": "dep_delay", "order": "desc"},
            "limit": 5,
            "fields": ["dep_delay"],
        }
    )
    delays = sorted(
        (int(row["dep_delay"]) for row in flights_rows() if row["dep_delay"] != "NA"),
        reverse=True,
    )
    assert [row["dep_delay"] for row in result["rows"]] == delays[:5]


def test_compute_mean_matches_csv(engine: Engine) -> None:
    result = engine.compute(
        {
            "where": {"origin": ["JFK"]},
            "metrics": [{"op": "mean", "field": "arr_delay"}],
            "group_by": "carrier",
        }
    )
    rows = matching_rows({"origin": ["JFK"]})
    delays = [int(row["arr_delay"]) for row in rows if row["arr_delay"] != "NA"]
    [metric] = result["metrics"]
    assert metric["value"] == pytest.approx(sum(delays) / len(delays))
    assert metric["missing"] == len(rows) - len(delays)
    assert set(result["groups"]) == set(value_counts(rows, "carrier"))


def test_describe_lists_fields_and_memory(engine: Engine) -> None:
    description = engine.describe()
    assert description["dataset"] == "flights"
    assert description["rows"] == 336_776
    fields = description["fields"]
    assert fields["carrier"]["kind"] == "facet"
    assert fields["origin"]["values"] == value_counts(list(flights_rows()), "origin")
    assert fields["month"]["kind"] == "facet"
    assert fields["month"]["numeric"] is True
    assert fields["tailnum"]["kind"] == "text"
    assert fields["flight"]["kind"] == "numeric"
    assert fields["dep_delay"]["kind"] == "numeric"
    assert fields["dep_delay"]["missing"] == 8255
    assert description["id_column"] is None


def test_index_memory_within_raw_plus_20_percent(engine: Engine) -> None:
    memory = engine.describe()["memory"]
    assert memory["raw_bytes"] > 0
    assert memory["index_bytes"] <= memory["raw_bytes"] * 1.2
