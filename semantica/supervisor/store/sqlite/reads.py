"""Reads on SQLite: jobs by id, lists, counts, pages and the rows of a view.

A read runs no transaction of its own (it sees the open batch of the
supervisor's own writes); an SQLite failure becomes a typed StoreError. A page
reads rows only as it takes them: the rows past a full page are never read.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from semantica.errors import NoSuchJob
from semantica.models import Job, JobState
from semantica.supervisor.store import listing
from semantica.supervisor.store.contract import JobsList
from semantica.supervisor.store.records import Page
from semantica.supervisor.store.rows import (
    ALL_STATES_SQL,
    JOB_COLUMNS,
    PRIORITY,
    STATE_OF,
    PageBuilder,
    check_id,
    cut_row,
    filters,
    job_from_row,
    row_columns,
)
from semantica.supervisor.store.sqlite.connection import SQLiteConnection, reads
from semantica.supervisor.store.sqlite.leases import _QUEUED_QUEUES
from semantica.supervisor.store.sqlite.rows import EDGES, json_ids, rows_by_id


class SQLiteReads(SQLiteConnection):
    """Reading jobs: one, several in order, pages within a byte budget, lists,
    counts, and the rows of a view."""

    @reads
    def get(self, job_id: int) -> Job:
        """One job, with its dependencies and dependents.

        Raises:
            NoSuchJob: no job has this id.
        """
        check_id(job_id)
        row = self._conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return EDGES.describe(self._conn, job_from_row(row))

    @reads
    def dependency_waits(self) -> int:
        """How many QUEUED jobs wait for other jobs (``status``)."""
        return EDGES.waiting_count(self._conn)

    @reads
    def get_many(self, job_ids: Iterable[int]) -> list[Job]:
        """Several jobs, in the order asked (an id asked twice comes twice).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        wanted = list(job_ids)
        found = {row[0]: job_from_row(row) for row in rows_by_id(self._conn, wanted, JOB_COLUMNS)}
        return [found[job_id] for job_id in wanted]

    @reads
    def get_page(self, job_ids: Sequence[int], budget: int | None) -> Page:
        """:meth:`get_many`, but only the first jobs that fit in ``budget`` bytes of reply
        (at least one; None: no limit); the rows of the others are not read.

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        wanted = list(job_ids)
        for job_id in wanted:
            check_id(job_id)
        # One statement whose rows come in the order asked (CROSS JOIN makes the
        # ids the outer loop; json_each walks them in order) and are read only as
        # they are taken: the rows past the page are never read. A job missing
        # among those read shows as a row out of step with the ids; the ones past
        # the page are checked apart, only when there are such (a wait of 10,000
        # jobs that fit one reply costs one statement, not two).
        rows = self._conn.execute(
            f"SELECT {JOB_COLUMNS} FROM (SELECT value AS wanted FROM json_each(?)) "
            "CROSS JOIN jobs ON jobs.id = wanted",
            (json_ids(wanted),),
        )
        page = PageBuilder(budget)
        try:
            for job_id, row in zip(wanted, rows, strict=False):
                if row[0] != job_id:  # no such job (none, or deleted by maintenance)
                    raise NoSuchJob(f"no job {job_id}")
                if not page.add(row):
                    break
        finally:
            rows.close()
        if len(page.jobs) < len(wanted):
            if not page.more:
                raise NoSuchJob(f"no job {wanted[len(page.jobs)]}")
            rows_by_id(self._conn, wanted[len(page.jobs) :], "id")  # each exists, or NoSuchJob
        return page.page()

    @reads
    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """The states alone of several jobs (cheaper than :meth:`get_many`).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        return {
            job_id: STATE_OF[state]
            for job_id, state in rows_by_id(self._conn, list(job_ids), "id, state")
        }

    @reads
    def state(self, job_id: int) -> JobState:
        """A job's state alone (cheap).

        Raises:
            NoSuchJob: no job has this id.
        """
        check_id(job_id)
        row = self._conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return JobState(row[0])

    @reads
    def list(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Job]:
        """Jobs matching every filter given, newest first, at most ``limit``.

        ``before``: only jobs with a lower id (the next page after a job).
        """
        return self.list_page(
            state=state, queue=queue, type=type, subject=subject, limit=limit, before=before
        ).jobs

    @reads
    def list_page(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
        before: int | None = None,
        budget: int | None = None,
    ) -> Page:
        """:meth:`list`, from the jobs with an id below ``before`` (if given), and only as
        many as fit in ``budget`` bytes of reply (at least one): rows past it are not read.
        Read as :mod:`~semantica.supervisor.store.listing` says."""
        way = listing.how(state, queue, type, subject)
        if way == listing.PAIRS:
            rows = self._rows_of(JOB_COLUMNS, self._newest(state, queue, type, limit, before))
        else:
            clause, args = filters(state=state, queue=queue, type=type, subject=subject)
            if before is not None:
                clause += (" AND " if clause else "WHERE ") + "id < ?"
                args.append(before)
            table = _TABLES[way]
            rows = self._conn.execute(
                f"SELECT {JOB_COLUMNS} FROM {table} {clause} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            )
        page = PageBuilder(budget)
        try:
            for row in rows:  # (read as they are taken: the rows past the page are not)
                if not page.add(row):
                    break
        finally:
            rows.close()  # (an unfinished statement would hold its read snapshot)
        return page.page()

    def _newest(
        self, state: str | None, queue: str | None, type: str | None, limit: int, before: int | None
    ) -> Sequence[int]:
        """The ids of the newest ``limit`` jobs matching, walked pair by pair in
        ``jobs_state`` (listing.PAIRS: a state, or a queue)."""
        pairs: list[tuple[str, str | None]]
        if state is not None:
            queues = [queue] if queue is not None else self._queues_in(state)
            pairs = [(state, name) for name in queues]
        else:  # (a queue: listing.how)
            pairs = [(one, queue) for one in listing.STATES]
        where = "state = ? AND queue = ?" + (" AND type = ?" if type is not None else "")
        where += " AND id < ?" if before is not None else ""
        fixed = ([type] if type is not None else []) + ([before] if before is not None else [])
        found: Sequence[int] = []
        for pair in pairs:
            # Once the page is full, a pair's jobs older than its oldest cannot be in it.
            floor = found[-1] if len(found) == limit else 0
            newer = self._conn.execute(
                f"SELECT id FROM jobs INDEXED BY jobs_state WHERE {where} AND id > ? "
                "ORDER BY id DESC LIMIT ?",
                (*pair, *fixed, floor, limit),
            )
            found = heapq.nlargest(limit, itertools.chain(found, (row[0] for row in newer)))
        return found

    def _queues_in(self, state: str) -> Sequence[str]:
        """The queues that have jobs in ``state``: one seek in jobs_state per queue."""
        return [row[0] for row in self._conn.execute(_STATE_QUEUES, (state,))]

    def _rows_of(self, columns: str, ids: Sequence[int]) -> sqlite3.Cursor:
        """The rows of ``ids`` in that order, read only as they are taken (see get_page)."""
        return self._conn.execute(
            f"SELECT {columns} FROM (SELECT value AS wanted FROM json_each(?)) "
            "CROSS JOIN jobs ON jobs.id = wanted",
            (json_ids(ids),),
        )

    @reads
    def count(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        cap: int | None = None,
    ) -> int:
        """How many jobs match every filter given; at most ``cap`` (counting stops there).

        Read as a list is (listing.py); a queue alone is counted in its six (state,
        queue) ranges of jobs_state."""
        clause, args = filters(state=state, queue=queue, type=type, subject=subject)
        way = listing.how(state, queue, type, subject)
        table = _TABLES.get(way, "jobs")
        if way == listing.PAIRS and state is None:
            table = "jobs INDEXED BY jobs_state"
            clause += f" AND state IN {ALL_STATES_SQL}"
        if cap is None:
            (n,) = self._conn.execute(f"SELECT count(*) FROM {table} {clause}", args).fetchone()
        else:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} {clause} LIMIT ?)"
            (n,) = self._conn.execute(sql, (*args, cap)).fetchone()
        return int(n)

    @reads
    def next_queued(self, limit: int, cut: int | None = None) -> JobsList:
        """The first ``limit`` QUEUED jobs in dispatch order (priority, then oldest).

        The first ``limit`` of each queue, merged: each queue's are read from
        its end of ``jobs_queue_ready``, as a lease reads them. With ``cut``,
        rows for a view: no payload nor result, long texts cut at ``cut``
        characters (read that short, however long they are).
        """
        columns = JOB_COLUMNS if cut is None else row_columns(cut)
        rows: list[Sequence[Any]] = []
        names = self._conn.execute(_QUEUED_QUEUES + "SELECT name FROM live WHERE name IS NOT NULL")
        for (queue,) in names.fetchall():
            rows += self._conn.execute(
                f"SELECT {columns} FROM jobs INDEXED BY jobs_queue_ready "
                "WHERE state = 'QUEUED' AND queue = ? ORDER BY priority DESC, id LIMIT ?",
                (queue, limit),
            ).fetchall()
        rows.sort(key=lambda row: (-row[PRIORITY], row[0]))
        jobs = [job_from_row(row) for row in rows[:limit]]
        return jobs if cut is None else [cut_row(job, cut) for job in jobs]

    @reads
    def latest_rows(self, state: str, limit: int, cut: int) -> JobsList:
        """The newest ``limit`` jobs in ``state``, as rows for a view (see :meth:`next_queued`)."""
        rows = self._rows_of(row_columns(cut), self._newest(state, None, None, limit, None))
        return [cut_row(job_from_row(row), cut) for row in rows.fetchall()]

    @reads
    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        counts = {state.value: 0 for state in JobState}
        for state, n in self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[state] = n
        return counts


#: The index a list reads, by way (listing.py), named: SQLite, without statistics, would
#: rather take jobs_state when a state or a queue is given too, and walk all of theirs.
_TABLES = {
    listing.SUBJECT: "jobs INDEXED BY jobs_subject",
    listing.TYPE: "jobs INDEXED BY jobs_by_type",
    listing.SCAN: "jobs",
}

#: The queues that have jobs in a state (?1), read from jobs_state a seek a queue: the
#: next name after each, never the jobs in between.
_STATE_QUEUES = (
    "WITH RECURSIVE names(name) AS ("
    "SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_state WHERE state = ?1) "
    "UNION ALL SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_state "
    "                  WHERE state = ?1 AND queue > names.name) "
    "FROM names WHERE names.name IS NOT NULL) "
    "SELECT name FROM names WHERE name IS NOT NULL"
)
