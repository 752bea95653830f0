"""Reads on PostgreSQL: jobs by id, lists, counts, pages and the rows of a view.

A read runs no transaction of its own (autocommit; inside an open batch it
sees the supervisor's own writes), under the connection's deadline. A page
decodes rows only as it takes them: the rows past a full page are received
(their number is bounded by the request) but never decoded into jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from semantica.errors import NoSuchJob
from semantica.models import Job, JobState
from semantica.supervisor.store import listing
from semantica.supervisor.store.contract import JobsList
from semantica.supervisor.store.postgres.connection import PGConnection, reads
from semantica.supervisor.store.postgres.leases import QUEUED_QUEUES
from semantica.supervisor.store.postgres.rows import EDGES, JOB_COLUMNS, rows_by_id, view_columns
from semantica.supervisor.store.records import Page
from semantica.supervisor.store.rows import (
    ALL_STATES_SQL,
    PRIORITY,
    PageBuilder,
    check_id,
    cut_row,
    filters,
    job_from_row,
)


class PGReads(PGConnection):
    """Reading jobs: one, several in order, pages within a byte budget, lists,
    counts, and the rows of a view."""

    @reads
    def get(self, job_id: int) -> Job:
        """One job, with its dependencies and dependents.

        Raises:
            NoSuchJob: no job has this id.
        """
        check_id(job_id)
        conn = self._live()
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return EDGES.describe(conn, job_from_row(row))

    @reads
    def dependency_waits(self) -> int:
        """How many QUEUED jobs wait for other jobs (``status``)."""
        return EDGES.waiting_count(self._live())

    @reads
    def get_many(self, job_ids: Iterable[int]) -> list[Job]:
        """Several jobs, in the order asked (an id asked twice comes twice).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        wanted = list(job_ids)
        rows = rows_by_id(self._live(), wanted, JOB_COLUMNS)
        found = {row[0]: job_from_row(row) for row in rows}
        return [found[job_id] for job_id in wanted]

    @reads
    def get_page(self, job_ids: Sequence[int], budget: int | None) -> Page:
        """:meth:`get_many`, but only the first jobs that fit in ``budget`` bytes of reply
        (at least one; None: no limit).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        wanted = list(job_ids)
        conn = self._live()
        rows_by_id(conn, wanted, "id")  # every one exists, or NoSuchJob
        page = PageBuilder(budget)
        rows = _fetching(
            conn,
            f"SELECT {JOB_COLUMNS} FROM unnest(%s::bigint[]) WITH ORDINALITY AS w(wanted, n) "
            "JOIN jobs ON jobs.id = w.wanted ORDER BY w.n",
            (wanted,),
        )
        for job_id, row in zip(wanted, rows, strict=False):
            if row[0] != job_id:  # deleted since the check above (maintenance)
                raise NoSuchJob(f"no job {job_id}")
            if not page.add(row):
                break
        if len(page.jobs) < len(wanted) and not page.more:
            raise NoSuchJob(f"no job {wanted[len(page.jobs)]}")
        return page.page()

    @reads
    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """The states alone of several jobs.

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        return {
            job_id: JobState(state)
            for job_id, state in rows_by_id(self._live(), list(job_ids), "id, state")
        }

    @reads
    def state(self, job_id: int) -> JobState:
        """A job's state alone (cheap).

        Raises:
            NoSuchJob: no job has this id.
        """
        check_id(job_id)
        row = self._live().execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return JobState(row[0])

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
        """Jobs matching every filter given, newest first, at most ``limit``; ``before``:
        only jobs with a lower id."""
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
        """:meth:`list`, only as many as fit in ``budget`` bytes of reply (at least one).
        Read as :mod:`~semantica.supervisor.store.listing` says (PostgreSQL finds
        jobs_subject for a subject by itself)."""
        if listing.how(state, queue, type, subject) == listing.PAIRS:
            sql, args = _newest(JOB_COLUMNS, state, queue, type, limit, before)
        else:
            clause, args = filters("%s", state=state, queue=queue, type=type, subject=subject)
            if before is not None:
                clause += (" AND " if clause else "WHERE ") + "id < %s"
                args.append(before)
            sql = f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT %s"
            args.append(limit)
        page = PageBuilder(budget)
        for row in _fetching(self._live(), sql, args):
            if not page.add(row):
                break
        return page.page()

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
        """How many jobs match every filter given; at most ``cap``. A queue without a
        state is counted in its six (state, queue) ranges of jobs_state."""
        clause, args = filters("%s", state=state, queue=queue, type=type, subject=subject)
        if subject is None and state is None and queue is not None:
            clause += f" AND state IN {ALL_STATES_SQL}"
        if cap is None:
            row = self._live().execute(f"SELECT count(*) FROM jobs {clause}", args).fetchone()
        else:
            row = (
                self._live()
                .execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM jobs {clause} LIMIT %s) AS c",
                    (*args, cap),
                )
                .fetchone()
            )
        return int(row[0]) if row else 0

    @reads
    def next_queued(self, limit: int, cut: int | None = None) -> JobsList:
        """The first ``limit`` QUEUED jobs in start order (priority, then oldest); with
        ``cut``, rows for a view (see the contract)."""
        columns = JOB_COLUMNS if cut is None else view_columns(cut)
        rows: list[Sequence[Any]] = (
            self._live()
            .execute(
                QUEUED_QUEUES + f"SELECT j.* FROM live CROSS JOIN LATERAL (SELECT {columns} "
                "FROM jobs WHERE state = 'QUEUED' AND queue = live.name "
                "ORDER BY priority DESC, id LIMIT %s) AS j WHERE live.name IS NOT NULL",
                (limit,),
            )
            .fetchall()
        )
        rows.sort(key=lambda row: (-row[PRIORITY], row[0]))
        jobs = [job_from_row(row) for row in rows[:limit]]
        return jobs if cut is None else [cut_row(job, cut) for job in jobs]

    @reads
    def latest_rows(self, state: str, limit: int, cut: int) -> JobsList:
        """The newest ``limit`` jobs in ``state``, as rows for a view."""
        sql, args = _newest(view_columns(cut), state, None, None, limit, None)
        rows = self._live().execute(sql, args).fetchall()
        return [cut_row(job_from_row(row), cut) for row in rows]

    @reads
    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        counts = {state.value: 0 for state in JobState}
        for state, n in self._live().execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[state] = n
        return counts


def _fetching(conn: Any, sql: str, args: Any) -> Iterable[Sequence[Any]]:
    """The rows of ``sql``, one at a time (decoded by the caller only as it takes them)."""
    yield from conn.execute(sql, args)


#: The queues that have jobs in a state, read from jobs_state a seek a queue (the next
#: name after each), as (state, queue) pairs ``p`` (the state is given three times).
_STATE_QUEUES = (
    "(WITH RECURSIVE names(name) AS ("
    "(SELECT queue FROM jobs WHERE state = %s ORDER BY queue LIMIT 1) "
    "UNION ALL SELECT (SELECT queue FROM jobs WHERE state = %s AND queue > names.name "
    "                  ORDER BY queue LIMIT 1) "
    "FROM names WHERE names.name IS NOT NULL) "
    "SELECT %s::text AS state, name AS queue FROM names WHERE name IS NOT NULL) AS p"
)


def _newest(
    columns: str,
    state: str | None,
    queue: str | None,
    type: str | None,
    limit: int,
    before: int | None,
) -> tuple[str, list[Any]]:
    """The statement reading the newest ``limit`` jobs matching, newest first, walked pair
    by pair in jobs_state (listing.PAIRS: a state, or a queue): each pair's newest ids
    (an index walk backwards, at most ``limit``), merged, then their rows."""
    pairs: str
    args: list[Any]
    if state is not None and queue is None:
        pairs, args = _STATE_QUEUES, [state, state, state]
    elif state is not None:
        pairs, args = "(SELECT %s::text AS state, %s::text AS queue) AS p", [state, queue]
    else:
        pairs = "(SELECT s AS state, %s::text AS queue FROM unnest(%s::text[]) AS s) AS p"
        args = [queue, list(listing.STATES)]
    where = "k.state = p.state AND k.queue = p.queue"
    if type is not None:
        where += " AND k.type = %s"
        args.append(type)
    if before is not None:
        where += " AND k.id < %s"
        args.append(before)
    sql = (
        f"SELECT {columns} FROM jobs WHERE id IN ("
        f"SELECT j.id FROM {pairs} CROSS JOIN LATERAL ("
        f"SELECT k.id FROM jobs AS k WHERE {where} ORDER BY k.id DESC LIMIT %s) AS j "
        "ORDER BY j.id DESC LIMIT %s) ORDER BY id DESC"
    )
    return sql, [*args, limit, limit]
