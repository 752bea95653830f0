"""The suite's own PostgreSQL server (tests/pgcluster.py): it starts, each test gets an
empty database of its own, and a server that cannot start is an error, never a skip."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pgcluster import ClusterError, PostgresCluster


def test_a_test_gets_an_empty_database_of_its_own(pg_database: str) -> None:
    """The database is new (no table), is the one named in the DSN, and takes writes."""
    with psycopg.connect(pg_database) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
        (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
        assert f"dbname={name}" in pg_database
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
        (version,) = conn.execute("SHOW server_version_num").fetchone() or ("0",)
        assert int(version) >= 120000  # SKIP LOCKED, LISTEN/NOTIFY, DROP DATABASE ... FORCE


def test_the_server_is_reached_by_url_over_tcp(pg_cluster: PostgresCluster) -> None:
    """The postgresql:// form a user gives (``--store``) reaches the same server."""
    with psycopg.connect(pg_cluster.url()) as conn:
        (port,) = conn.execute("SHOW port").fetchone() or ("",)
    assert int(port) == pg_cluster.port


def test_a_commit_survives_a_crash_of_the_server(
    pg_cluster: PostgresCluster, pg_database: str
) -> None:
    """With fsync off, a committed row is still there after the server is killed
    (``immediate``: no shutdown checkpoint) and started again: the chaos suite may
    crash the server and count on what was acknowledged."""
    with psycopg.connect(pg_database) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    pg_cluster.restart("immediate")
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)


def test_the_suite_s_server_does_not_flush_but_a_durable_one_does(
    pg_cluster: PostgresCluster,
) -> None:
    """The suite's server skips the flushes; one made ``durable`` (the benchmark's) keeps
    PostgreSQL's defaults, a flush per commit, so that the engines it compares pay it."""
    settings = ("fsync", "full_page_writes", "synchronous_commit")

    def shown(cluster: PostgresCluster) -> list[str]:
        with psycopg.connect(cluster.dsn()) as conn:
            return [str((conn.execute(f"SHOW {name}").fetchone() or ("",))[0]) for name in settings]

    assert shown(pg_cluster) == ["off", "off", "on"]
    durable = PostgresCluster(durable=True)
    try:
        assert shown(durable.start()) == ["on", "on", "on"]
    finally:
        durable.remove()


def test_a_server_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    """No server binaries where it looks: ClusterError saying so, not a skip."""
    cluster = PostgresCluster(bindir=tmp_path / "no-such-bin")
    try:
        with pytest.raises(ClusterError, match="initdb"):
            cluster.start()
    finally:
        cluster.remove()
