"""PostgreSQL source against the local server (127.0.0.1:5432, database test).

Each test creates its own uniquely named table and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from bellhop_shared.catalog import DatasetSpec
from bellhop_worker.engine import Engine
from bellhop_worker.errors import DatasetError
from psycopg import sql
from support import skip_or_fail

DATABASE_URL = os.environ.get(
    "BELLHOP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
URL_ENV = "BELLHOP_TEST_PG_URL"
MALICIOUS_USER = "x'; drop table t; --"


@pytest.fixture(scope="module")
def connection() -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(DATABASE_URL, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL at {DATABASE_URL} is not reachable: {exc}")
    yield conn
    conn.close()


@pytest.fixture
def table_name(connection: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"bellhop_test_{uuid.uuid4().hex[:12]}"
    connection.execute(
        sql.SQL(
            """CREATE TABLE {} (
                id integer PRIMARY KEY,
                owner text NOT NULL,
                region text,
                amount numeric(10, 2),
                visits smallint,
                active boolean,
                note text,
                seen timestamptz
            )"""
        ).format(sql.Identifier(name))
    )
    rows = [
        (
            n,
            ["alice", "bob", MALICIOUS_USER][n % 3],
            None if n % 10 == 0 else ["north", "south"][n % 2],
            n * 1.25,
            n % 5,
            n % 4 == 0,
            "" if n % 7 == 0 else f'say "hi",\nrow {n}',
            "2024-01-01T00:00:00Z" if n % 2 else None,
        )
        for n in range(600)
    ]
    with connection.cursor() as cursor:
        with cursor.copy(
            sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(name))
        ) as copy:
            for row in rows:
                copy.write_row(row)
    connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
    connection.execute(
        sql.SQL("CREATE SEQUENCE {}").format(sql.Identifier(name + "_seq"))
    )
    yield name
    connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    connection.execute(
        sql.SQL("DROP SEQUENCE IF EXISTS {}").format(sql.Identifier(name + "_seq"))
    )


@pytest.fixture(autouse=True)
def database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, DATABASE_URL)


def spec_for(**fields: Any) -> DatasetSpec:
    return DatasetSpec(name="pg", kind="postgres", database_url_env=URL_ENV, **fields)


def table_exists(connection: psycopg.Connection[Any], name: str) -> bool:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def test_table_loads_with_types(table_name: str) -> None:
    reports: list[float] = []
    engine = Engine.load(
        spec_for(table=table_name, id_column="id"), None, reports.append
    )

    description = engine.describe()
    assert description["rows"] == 600
    fields = description["fields"]
    assert fields["region"]["values"] == {"north": 240, "south": 300}
    assert fields["region"]["missing"] == 60
    assert fields["amount"]["kind"] == "numeric"
    assert fields["amount"]["max"] == pytest.approx(599 * 1.25)
    assert fields["visits"]["kind"] == "facet"
    assert fields["active"]["values"] == {"false": 450, "true": 150}
    assert fields["seen"]["type"] == "timestamp"
    assert fields["seen"]["missing"] == 300
    assert reports[-1] == 1.0
    assert reports == sorted(reports)


def test_rows_survive_quotes_newlines_and_empty_text(table_name: str) -> None:
    engine = Engine.load(
        spec_for(table=table_name, id_column="id"), None, lambda f: None
    )
    result = engine.filter(
        {"where": {"id": [7, 8]}, "fields": ["note", "seen", "region"], "limit": 5}
    )
    assert result["ids"] == [7, 8]
    assert result["rows"][0] == {
        "note": "",
        "seen": "2024-01-01T00:00:00Z",
        "region": "south",
    }
    assert result["rows"][1] == {
        "note": 'say "hi",\nrow 8',
        "seen": None,
        "region": "north",
    }


def test_user_param_binds_user(table_name: str) -> None:
    query = f"SELECT id, owner, amount FROM {table_name} WHERE owner = %s"
    engine = Engine.load(spec_for(query=query, user_param=True), "bob", lambda f: None)
    description = engine.describe()
    assert description["rows"] == 200
    assert description["fields"]["owner"]["values"] == {"bob": 200}


def test_malicious_user_is_only_a_value(
    connection: psycopg.Connection[Any], table_name: str
) -> None:
    query = f"SELECT id, owner FROM {table_name} WHERE owner = %s"
    engine = Engine.load(
        spec_for(query=query, user_param=True), MALICIOUS_USER, lambda f: None
    )
    assert engine.describe()["rows"] == 200
    assert table_exists(connection, table_name)

    unknown = "nobody'); drop table " + table_name + "; --"
    empty = Engine.load(spec_for(query=query, user_param=True), unknown, lambda f: None)
    assert empty.describe()["rows"] == 0
    assert empty.filter({})["count"] == 0
    assert table_exists(connection, table_name)


def test_session_is_read_only(table_name: str) -> None:
    query = f"SELECT id, nextval('{table_name}_seq') AS n FROM {table_name}"
    with pytest.raises(DatasetError) as caught:
        Engine.load(spec_for(query=query), None, lambda f: None)
    assert "read-only" in str(caught.value)


def test_bad_query_is_dataset_error(table_name: str) -> None:
    with pytest.raises(DatasetError) as caught:
        Engine.load(
            spec_for(query="SELECT nope FROM nowhere_table"), None, lambda f: None
        )
    message = str(caught.value)
    assert "PostgreSQL source of dataset 'pg' failed" in message
    assert "nowhere_table" in message
    assert "$" + URL_ENV in message


def test_missing_table_is_dataset_error() -> None:
    with pytest.raises(DatasetError) as caught:
        Engine.load(spec_for(table="bellhop_no_such_table"), None, lambda f: None)
    assert "bellhop_no_such_table" in str(caught.value)


def test_unset_url_is_dataset_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV)
    with pytest.raises(DatasetError) as caught:
        Engine.load(spec_for(table="t"), None, lambda f: None)
    assert f"${URL_ENV} is not set" in str(caught.value)


def test_unreachable_server_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, "postgresql://postgres:secret@127.0.0.1:1/test")
    with pytest.raises(DatasetError) as caught:
        Engine.load(spec_for(table="t"), None, lambda f: None)
    assert "secret" not in str(caught.value)


def test_user_param_needs_one_placeholder() -> None:
    spec = spec_for(query="SELECT 1 AS one", user_param=True)
    with pytest.raises(DatasetError) as caught:
        Engine.load(spec, "bob", lambda f: None)
    assert "exactly one %s placeholder" in str(caught.value)


def test_user_param_needs_a_user(table_name: str) -> None:
    spec = spec_for(
        query=f"SELECT id FROM {table_name} WHERE owner = %s", user_param=True
    )
    with pytest.raises(DatasetError) as caught:
        Engine.load(spec, None, lambda f: None)
    assert "--user" in str(caught.value)
