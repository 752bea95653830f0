"""One throwaway PostgreSQL server per test process, and a store per "place" on it.

The store conformance suite opens stores by a place (a directory of the
test's own; tests/store/backends.py). On PostgreSQL each place is a schema of
its own in one database of this process (``search_path`` in the DSN), the
same schema again for the same place (a restart); the store makes its tables
there when it migrates. A schema costs about 45 ms to make and migrate and
6 ms to drop, where a database from a template costs 300 ms: the suite opens
hundreds of stores. (The changes feed's channel is one per database: tests of
the feed use a database of their own, ``pg_database``.)

The server is the one the ``pg_cluster`` fixture gives (tests/conftest.py),
started on first use by either, and removed when the process exits. Schemas
are dropped by :func:`drop_stores` (after each test of the store suite) and,
for places that no longer exist (a temporary directory a hypothesis example
made and removed), at the next :func:`database_for`.
"""

from __future__ import annotations

import atexit
import itertools
import os
from pathlib import Path

import psycopg
from pgcluster import PostgresCluster
from psycopg import sql

_cluster: PostgresCluster | None = None
_database: str | None = None
_places: dict[Path, str] = {}
_names = itertools.count(1)


def shared_cluster() -> PostgresCluster:
    """This process's server, started on first use (removed at exit)."""
    global _cluster
    if _cluster is None:
        cluster = PostgresCluster()
        atexit.register(cluster.remove)
        _cluster = cluster.start()
    return _cluster


def _stores_database() -> str:
    global _database
    if _database is None:
        name = f"stores_{os.getpid()}"
        with psycopg.connect(shared_cluster().dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        _database = name
    return _database


def _run(statement: sql.Composable) -> None:
    with psycopg.connect(shared_cluster().dsn(_stores_database()), autocommit=True) as conn:
        conn.execute(statement)


def database_for(place: Path) -> str:
    """The DSN of the store of ``place`` (a new, empty schema if the place is new)."""
    place = place.resolve()
    name = _places.get(place)
    if name is None:
        for gone in [p for p in _places if not p.exists()]:
            _drop(_places.pop(gone))
        name = f"place_{next(_names)}"
        _run(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        _places[place] = name
    return f"{shared_cluster().dsn(_stores_database())} options='-c search_path={name}'"


def _drop(name: str) -> None:
    _run(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def drop_stores() -> None:
    """Drop the schema of every place :func:`database_for` made (the end of a test)."""
    while _places:
        _drop(_places.popitem()[1])
