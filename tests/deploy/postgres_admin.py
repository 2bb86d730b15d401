"""The PostgreSQL server the deployment tests load data into."""

from __future__ import annotations

import os

import psycopg
from support import skip_or_fail

# The machine's server at 127.0.0.1:5432 accepts the postgres user without a
# password; BELLHOP_TEST_DATABASE_URL points the tests elsewhere.
ADMIN_URL = os.environ.get(
    "BELLHOP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def connect_admin() -> psycopg.Connection:
    """Connect in autocommit mode, or skip (fail under CI) when unreachable."""
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL at {ADMIN_URL} is unreachable: {exc}")
        raise
