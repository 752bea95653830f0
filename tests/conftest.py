"""Settings for the whole suite."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import conftest_summary
import psycopg
import pytest
from hypothesis import settings
from pgcluster import PostgresCluster
from pgshared import shared_cluster
from psycopg import sql

# Shared 2-core machines stall now and then; a per-example deadline turns that
# into a failure that says nothing about the code. Slow examples still show up
# in the run time.
settings.register_profile("semantica", deadline=None)
settings.load_profile("semantica")


# ---------------------------------------------------------------- PostgreSQL

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> PostgresCluster:
    """The suite's throwaway PostgreSQL server (tests/pgcluster.py), started on first use.

    If it cannot start, every test that uses it errors with the reason: never a skip.
    The store suite's databases are on it too (tests/pgshared.py); it is removed
    when the test process exits.
    """
    return shared_cluster()


@pytest.fixture
def pg_database(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A new, empty database on the suite's server, for this test alone: its libpq DSN."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_cluster.dsn(name)
    finally:
        with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    conftest_summary.collect(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    conftest_summary.print_them(terminalreporter)
