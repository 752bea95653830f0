"""Maintenance on PostgreSQL: a connection of its own, for a thread, in short steps.

Deleting old jobs and forgetting unused queues go in batches of short
transactions, safe when two nodes run them at once (a row deleted by one is
skipped by the other: ``FOR UPDATE SKIP LOCKED``). Nothing of SQLite's is
needed: the server's autovacuum makes the space of deleted rows reusable and
there is no journal to fold in. Compacting is a plain ``VACUUM`` of the
tables (never ``VACUUM FULL``, which would lock every node out): it takes no
lock that stops writers and gives the empty pages at the end of each table
back to the file system; it is wanted when the server's statistics count more
than :data:`DEAD_THRESHOLD` of a table's rows dead. The check is a cheap
sanity query (the schema is there and every job has a known state).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg

from semantica.supervisor.store.postgres.connection import open_connection, store_error, where
from semantica.supervisor.store.rows import ALL_STATES_SQL, FINISHED_STATES_SQL

#: Dead rows above this share of a table's rows, and compacting is wanted.
DEAD_THRESHOLD = 0.10
_TABLES = ("jobs", "queues", "nodes", "job_logs")
#: What the store's size counts: its tables, with their indexes and long values.
SIZE_SQL = (
    "SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0) "
    f"FROM unnest(ARRAY{list(_TABLES)}) t"
)


class PGUpkeep:
    """Long store work on a connection of its own, meant to run in a thread."""

    #: Its writes are short transactions that hold no one off: no maintenance gate.
    exclusive = False

    def __init__(self, dsn: str, deadline: float) -> None:
        self.place = where(dsn)
        try:
            self._conn: psycopg.Connection[Any] = open_connection(dsn, deadline, {})
        except psycopg.Error as exc:
            raise store_error(
                exc, "cannot open the job store for maintenance", self.place
            ) from None

    def close(self) -> None:
        # The lead goes with the session, but a session ends on the server a moment after
        # the client hangs up: let go of it first, so another node may lead at once.
        with contextlib.suppress(psycopg.Error):
            self._conn.execute("SELECT pg_advisory_unlock_all()")
        self._conn.close()

    def lead(self) -> bool:
        """Take the lead of maintenance among the nodes: a session advisory lock, held
        until this connection closes; False if another node's upkeep holds it."""
        row = self._run(
            "taking the lead of maintenance failed",
            "SELECT pg_try_advisory_lock(hashtext('semantica maintenance'))",
        )
        return bool(row[0][0])

    def _run(self, what: str, sql: str, args: Any = None) -> list[Any]:
        try:
            cur = self._conn.execute(sql, args)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise store_error(exc, what, self.place) from None

    def size_bytes(self) -> int:
        """Bytes the store's tables take (their indexes and long values included)."""
        return int(self._run("reading the store's size failed", SIZE_SQL)[0][0])

    def delete_finished(self, before: float, batch: int = 500) -> list[int]:
        """Delete up to ``batch`` finished jobs that ended before ``before``, in one short
        transaction; their ids (fewer than ``batch``: no more)."""
        # Their dependency edges go with them, both ways, in the same statement.
        rows = self._run(
            "deleting old jobs failed",
            "WITH gone AS (DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
            f"WHERE finished_at < %s AND state IN {FINISHED_STATES_SQL} "
            "LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id), "
            "edges AS (DELETE FROM job_deps WHERE job_id IN (SELECT id FROM gone) "
            "OR after_id IN (SELECT id FROM gone)) "
            "SELECT id FROM gone",
            (before, batch),
        )
        if rows and self._conn.info.server_version >= 150000:
            # The server's statistics (wants_compacting) count these at once.
            self._run("deleting old jobs failed", "SELECT pg_stat_force_next_flush()")
        return [job_id for (job_id,) in rows]

    def forget_queues(self, after: str, batch: int = 500) -> tuple[int, str | None]:
        """Look at up to ``batch`` queues named after ``after`` and delete those with no job
        and no setting, in one short transaction; how many, and where to go on."""
        names = [
            name
            for (name,) in self._run(
                "forgetting unused queues failed",
                "SELECT name FROM queues WHERE name > %s ORDER BY name LIMIT %s",
                (after, batch),
            )
        ]
        gone = self._run(
            "forgetting unused queues failed",
            "DELETE FROM queues WHERE name = ANY(%s::text[]) "
            "AND NOT paused AND max_running = 0 AND NOT EXISTS ("
            f"  SELECT 1 FROM jobs WHERE jobs.state IN {ALL_STATES_SQL} "
            "  AND jobs.queue = queues.name) RETURNING name",
            (names,),
        )
        return len(gone), (names[-1] if len(names) == batch else None)

    def existing(self, job_ids: Sequence[int]) -> set[int]:
        """Which of ``job_ids`` name a job."""
        rows = self._run(
            "reading the job store failed",
            "SELECT id FROM jobs WHERE id = ANY(%s::bigint[])",
            ([job_id for job_id in job_ids if 0 < job_id < 2**63],),
        )
        return {job_id for (job_id,) in rows}

    def flush_journal(self) -> None:
        """Nothing to do: PostgreSQL's write-ahead log is the server's own business."""

    def wants_compacting(self) -> bool:
        """Whether the server counts more than DEAD_THRESHOLD of a table's rows dead."""
        rows = self._run(
            "reading the store's statistics failed",
            "SELECT coalesce(bool_or(n_dead_tup > %s * greatest(n_live_tup + n_dead_tup, 1)), "
            "false) FROM pg_stat_user_tables WHERE relid = ANY(ARRAY(SELECT to_regclass(t) "
            "FROM unnest(%s::text[]) t))",
            (DEAD_THRESHOLD, list(_TABLES)),
        )
        return bool(rows[0][0])

    def compact_step(self) -> int:
        """``VACUUM`` the tables (no lock that stops writers); the bytes given back."""
        before = self.size_bytes()
        for table in _TABLES:
            self._run("vacuum failed", f"VACUUM {table}")
        return max(0, before - self.size_bytes())

    def compact_fully(self) -> None:
        """The same as :meth:`compact_step`: a ``VACUUM FULL`` would stop every node."""
        self.compact_step()

    def check(self) -> str:
        """``ok``, or what a sanity check of the schema and the jobs found wrong."""
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM jobs WHERE state NOT IN " + ALL_STATES_SQL
            ).fetchone()
        except psycopg.Error as exc:
            return f"the check failed: {exc}"
        if row and row[0]:
            return f"{row[0]} jobs have an unknown state"
        return "ok"
