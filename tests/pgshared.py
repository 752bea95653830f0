"""One throwaway PostgreSQL server per test process, and a database per store "place".

The store conformance suite opens stores by a place (a directory of the
test's own; tests/store/backends.py): on PostgreSQL each place is a database,
the same one again for the same place (a restart), made from a template that
already holds the newest schema, so a fresh store costs a ``CREATE DATABASE``
(tens of milliseconds) rather than its migrations. The server is the one the
``pg_cluster`` fixture gives (tests/conftest.py), started on first use by
either, and removed when the process exits.

Databases are dropped by :func:`drop_databases` (after each test of the
store suite) and, for places that no longer exist (a temporary directory a
hypothesis example made and removed), at the next :func:`database_for`.
"""

from __future__ import annotations

import atexit
import itertools
import os
import time
from pathlib import Path

import psycopg
from pgcluster import PostgresCluster
from psycopg import sql

from semantica.supervisor.store.postgres import PostgresStore

TEMPLATE = "semantica_template"

_cluster: PostgresCluster | None = None
_places: dict[Path, str] = {}
_names = itertools.count(1)
_template_ready = False


def shared_cluster() -> PostgresCluster:
    """This process's server, started on first use (removed at exit)."""
    global _cluster
    if _cluster is None:
        cluster = PostgresCluster()
        atexit.register(cluster.remove)
        _cluster = cluster.start()
    return _cluster


def _admin(statement: sql.Composable) -> None:
    cluster = shared_cluster()
    for attempt in range(50):
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(statement)
            return
        except psycopg.errors.ObjectInUse:
            # The template's last session ends a moment after its client closed it.
            if attempt == 49:
                raise
            time.sleep(0.02)


def _template() -> str:
    global _template_ready
    if not _template_ready:
        cluster = shared_cluster()
        _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        PostgresStore(cluster.dsn(TEMPLATE), migrate=True).close()
        _template_ready = True
    return TEMPLATE


def database_for(place: Path) -> str:
    """The DSN of the database of ``place``, made (empty, at the newest schema) if new."""
    place = place.resolve()
    name = _places.get(place)
    if name is None:
        for gone in [p for p in _places if not p.exists()]:
            _drop(_places.pop(gone))
        name = f"store_{os.getpid()}_{next(_names)}"
        _admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_template())
            )
        )
        _places[place] = name
    return shared_cluster().dsn(name)


def _drop(name: str) -> None:
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_databases() -> None:
    """Drop every database :func:`database_for` made (the end of a test)."""
    while _places:
        _drop(_places.popitem()[1])
