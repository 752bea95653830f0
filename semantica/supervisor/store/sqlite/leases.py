"""Leases on SQLite: which queued jobs start next, and taking them.

A lease moves a job QUEUED -> RUNNING under a new lease id; every later move
of the job names that id (see moves.py), so a late report from a worker that
was given up on changes nothing.
"""

from __future__ import annotations

import sqlite3

from semantica.models import JobState, check_transition
from semantica.supervisor.store.contract import JobsList
from semantica.supervisor.store.records import Lease
from semantica.supervisor.store.rows import cut_row, job_from_row, row_columns
from semantica.supervisor.store.sqlite.connection import reads
from semantica.supervisor.store.sqlite.migrations import SQLiteMigrations
from semantica.supervisor.store.sqlite.rows import IDS_IN_JSON, json_ids, rows_by_id
from semantica.supervisor.store.start_rules import Blockers, Candidate, pick

# The queues that have queued jobs, by name: a skip through jobs_queue_ready, one
# seek per such queue. Queues without queued jobs are never looked at, so the work
# of a lease does not grow with the queue names ever used (the queues table keeps
# every queue that has jobs of any state or a setting).
_QUEUED_QUEUES = (
    "WITH RECURSIVE live(name) AS ("
    "SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_queue_ready WHERE state = 'QUEUED') "
    "UNION ALL SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_queue_ready "
    "                  WHERE state = 'QUEUED' AND queue > live.name) "
    "FROM live WHERE live.name IS NOT NULL) "
)
# Queues that have queued jobs and may start them, with their cap and how many of
# their jobs run. (A queue without a row has the default settings.)
_QUEUE_ROOM = (
    _QUEUED_QUEUES + "SELECT live.name, coalesce(q.max_running, 0), "
    "(SELECT count(*) FROM jobs AS r INDEXED BY jobs_state "
    " WHERE r.state = 'RUNNING' AND r.queue = live.name) "
    "FROM live LEFT JOIN queues AS q ON q.name = live.name "
    "WHERE live.name IS NOT NULL AND coalesce(q.paused, 0) = 0"
)
# The next jobs of one queue that may start now: due, waiting for no job, subject free,
# conditions met; best first. (A narrowing, as an index: _startable decides each with
# the start rules.) Each row also carries what a lease of the job needs (the columns
# after deps_unmet), so that the take is one UPDATE with nothing to return: reading
# them here costs little (the row is read anyway), where a RETURNING clause cost more
# than the rest of the UPDATE.
_NEXT_IN_QUEUE = (
    "SELECT j.priority, j.id, j.type, j.subject, j.run_after, j.require_charging, "
    "j.require_idle, j.deps_unmet, j.payload, j.attempts, j.max_attempts, j.timeout_s, "
    "j.backoff_s, j.created_at FROM jobs AS j INDEXED BY jobs_queue_ready "
    "WHERE j.state = 'QUEUED' AND j.queue = ? AND j.run_after <= ? AND j.deps_unmet = 0 "
    "AND (j.subject IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS r WHERE r.type = j.type "
    "     AND r.subject = j.subject AND r.state = 'RUNNING')) "
    "AND (j.require_charging = 0 OR ?) AND (j.require_idle = 0 OR ?) "
    "ORDER BY j.priority DESC, j.id LIMIT ?"
)
# Take the picked jobs, all in one statement: the n-th of the JSON array of ids (from
# 0) gets lease id ?2 + n and starts at ?1 + n microseconds, so lease ids and start
# times increase in the order given. Each job is looked up by its id (+state: not
# through an index on the state, which would walk every queued job).
_TAKE = (
    "UPDATE jobs SET state = 'RUNNING', attempts = attempts + 1, "
    "started_at = ?1 + t.n * 1e-6, finished_at = NULL, lease_id = ?2 + t.n, "
    "worker_pid = ?3, progress = NULL, progress_message = NULL "
    "FROM (SELECT CAST(key AS INTEGER) AS n, value AS id FROM json_each(?4)) AS t "
    "WHERE jobs.id = t.id AND +jobs.state = 'QUEUED'"
)
# The same for one job.
_TAKE_ONE = (
    "UPDATE jobs SET state = 'RUNNING', attempts = attempts + 1, started_at = ?1, "
    "finished_at = NULL, lease_id = ?2, worker_pid = ?3, progress = NULL, "
    "progress_message = NULL WHERE id = ?4 AND state = 'QUEUED'"
)
# After a take that moved fewer jobs than it was given (which one writer never sees):
# the ids that did move under their lease.
_TAKEN = f"SELECT id, lease_id FROM jobs WHERE id IN {IDS_IN_JSON} AND state = 'RUNNING'"

#: What a lease needs of a job: type, queue, payload, attempts (before this one),
#: max_attempts, timeout_s, backoff_s, created_at.
_LeaseColumns = tuple[str, str, str, int, int, float | None, float | None, float]


class SQLiteLeases(SQLiteMigrations):
    """Taking jobs to run: the start order, the start rules, and lease ids.

    There is one writer (the supervisor), so lease ids are counted in memory,
    going on from the newest in the file (``_last_lease``, read at open); a
    backend with several writers takes them from a sequence instead.
    """

    _last_start: float  # started_at of the latest lease: later ones come after it

    def lease(self, worker_pid: int, *, on_ac: bool = True, idle: bool = True) -> Lease | None:
        """Atomically take the next job that may start now for a worker, or None.

        The next job is the QUEUED one with the highest priority, oldest first,
        whose ``run_after`` has passed, whose queue is not paused nor at its
        limit, no job of whose ``(type, subject)`` is running, and whose
        conditions hold (``on_ac`` and ``idle`` say how the machine is). It
        becomes RUNNING with a new lease id, one more attempt and ``started_at``
        now; the error of an earlier attempt stays until this one ends.
        """
        leases = self.lease_many(worker_pid, 1, on_ac=on_ac, idle=idle)
        return leases[0] if leases else None

    def _next_start(self, now: float) -> float:
        """``started_at`` for a new lease: now, and after every earlier one.

        Leases taken in one batch, or within one tick of a coarse clock, would
        otherwise share a time; the order of ``started_at`` is the order jobs
        started in.
        """
        self._last_start = max(now, self._last_start + 1e-6)
        return self._last_start

    def lease_many(
        self, worker_pid: int, count: int, *, on_ac: bool = True, idle: bool = True
    ) -> list[Lease]:
        """Up to ``count`` jobs for one worker, in one write, in the order it should run them.

        The same jobs, in the same order, as ``count`` calls of :meth:`lease`
        would take (priority, then age; paused queues, queue caps, subjects and
        conditions respected, counting the jobs of this batch), except that it
        may return fewer: it looks at most ``count`` candidates deep per queue.
        A paused or full queue is skipped without looking at its jobs, however
        many it holds.
        """
        check_transition(JobState.QUEUED, JobState.RUNNING)
        now = self.clock.time()
        with self.transaction() as conn:
            picked, columns = self._startable(conn, count, now, on_ac, idle)
            if not picked:
                return []
            first_lease = self._last_lease + 1
            first_start = self._next_start(now)
            self._last_lease += len(picked)
            self._last_start = first_start + (len(picked) - 1) * 1e-6
            if len(picked) == 1:  # (one job: its own statement, no JSON to build and read)
                take_one = (first_start, first_lease, worker_pid, picked[0])
                moved = conn.execute(_TAKE_ONE, take_one).rowcount
            else:
                take = (first_start, first_lease, worker_pid, json_ids(picked))
                moved = conn.execute(_TAKE, take).rowcount
            leases = [
                self._lease(first_lease + n, job_id, columns[job_id])
                for n, job_id in enumerate(picked)
            ]
            if moved != len(picked):  # (each was QUEUED a moment ago, in this transaction)
                taken = set(conn.execute(_TAKEN, (json_ids(picked),)).fetchall())
                leases = [lease for lease in leases if (lease.job_id, lease.lease_id) in taken]
        return leases

    @staticmethod
    def _startable(
        conn: sqlite3.Connection, count: int, now: float, on_ac: bool, idle: bool
    ) -> tuple[list[int], dict[int, _LeaseColumns]]:
        """The ids of the jobs ``count`` leases would take now, in the order they would,
        and what a lease of each needs (by id; of every candidate read).

        The one place that knows the start order: :meth:`lease_many` takes these,
        :meth:`next_startable` shows them. The SQL reads, per queue that may start
        a job, its best few candidates that nothing holds back now (the start rules
        as an index would apply them: a paused or full queue's jobs are not even
        read); then :func:`~..start_rules.waiting_reason` decides each in order,
        counting the jobs this batch takes as running.
        """
        facts = Blockers()
        candidates: list[Candidate] = []
        columns: dict[int, _LeaseColumns] = {}
        for queue, cap, running in conn.execute(_QUEUE_ROOM).fetchall():
            if cap and running >= cap:
                continue
            facts.limits[queue], facts.running_per_queue[queue] = cap, running
            for row in conn.execute(_NEXT_IN_QUEUE, (queue, now, on_ac, idle, count)):
                priority, job_id, type_, subject, run_after, charging, idle_, unmet = row[:8]
                candidates.append(
                    (-priority, job_id, type_, subject, queue, run_after, charging, idle_, unmet)
                )
                columns[job_id] = (type_, queue, *row[8:])
        picked = pick(candidates, facts, count, now, on_ac, idle)
        return [candidate[1] for candidate in picked], columns

    @reads
    def next_startable(
        self, count: int, cut: int, *, on_ac: bool = True, idle: bool = True
    ) -> JobsList:
        """The jobs that would start next if ``count`` workers were free now, in that
        order, as rows for a view (see :meth:`next_queued`).

        A read: the same choice as :meth:`lease_many`, nothing taken.
        """
        ids, _ = self._startable(self._conn, count, self.clock.time(), on_ac, idle)
        rows = rows_by_id(self._conn, ids, row_columns(cut))
        found = {row[0]: cut_row(job_from_row(row), cut) for row in rows}
        return [found[job_id] for job_id in ids if job_id in found]

    @staticmethod
    def _lease(lease_id: int, job_id: int, columns: _LeaseColumns) -> Lease:
        """The lease ``lease_id`` of job ``job_id``, whose columns were read before its take."""
        type_, queue, payload, attempts, max_attempts, timeout, backoff, created_at = columns
        return Lease(
            lease_id=lease_id,
            job_id=job_id,
            type=type_,
            queue=queue,
            payload=payload.encode(),
            attempt=attempts + 1,
            max_attempts=max_attempts,
            timeout=timeout,
            backoff=backoff,
            created_at=created_at,
        )
