"""The benchmark's PostgreSQL server: one throwaway server for the whole run, a fresh database
for every instance of every engine.

The server is the test suite's :class:`PostgresCluster` (tests/pgcluster.py: initdb and pg_ctl
in a temporary directory, as the ``postgres`` user when run as root), imported from that file
by path rather than copied, and started ``durable``: ``fsync``, ``full_page_writes`` and
``synchronous_commit`` on, PostgreSQL's defaults, where the suite turns the flushes off. Every
engine, ours and the peers, reaches it the same way, by a ``postgresql://`` URL over TCP on
127.0.0.1 (what a node on another host would use), and everything else is the server's
default configuration.

A server that cannot start raises ``ClusterError`` with its log: the run stops there rather
than measure nothing. The temporary directory goes when the context ends.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: What the header says about the server, read back from it (``SHOW``).
SHOWN = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers")


def _pgcluster() -> ModuleType:
    """tests/pgcluster.py as module ``pgcluster`` (the name tests/conftest.py imports it by)."""
    loaded = sys.modules.get("pgcluster")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("pgcluster", ROOT / "tests" / "pgcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pgcluster"] = module
    spec.loader.exec_module(module)
    return module


class PgServer:
    """A durable throwaway PostgreSQL server; :meth:`database` gives each instance its own."""

    def __init__(self) -> None:
        self.cluster: Any = _pgcluster().PostgresCluster(durable=True)
        self._names = itertools.count(1)
        self.settings: dict[str, str] = {}

    def __enter__(self) -> PgServer:
        import psycopg

        self.cluster.start()
        with psycopg.connect(self.cluster.dsn()) as conn:
            for name in SHOWN:
                row = conn.execute(f"SHOW {name}").fetchone()
                self.settings[name] = str(row[0]) if row else "?"
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.remove()

    @property
    def description(self) -> str:
        s = self.settings
        return (
            f"PostgreSQL {s.get('server_version', '?')}, fsync={s.get('fsync')}, "
            f"synchronous_commit={s.get('synchronous_commit')}, "
            f"full_page_writes={s.get('full_page_writes')}, "
            f"shared_buffers={s.get('shared_buffers')}, TCP on 127.0.0.1"
        )

    def create(self, engine: str) -> tuple[str, str]:
        """A new, empty database for one instance of ``engine``: (its name, its URL)."""
        import psycopg
        from psycopg import sql

        name = f"bench_{engine.replace('-', '_')}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name, self.cluster.url(name)

    def drop(self, name: str) -> None:
        """Drop an instance's database, ending what is still connected to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
