"""The moves of a job after it was leased, and the moves of a queued or ended one.

As SQLite's (sqlite/moves.py): every move is checked against the transition
table before its UPDATE runs, and each UPDATE names the state it expects and,
for a running job, its lease id, so a late message from a worker given up on,
on any node, changes nothing. A job leaving RUNNING loses its node. Each move
tells the other nodes what changed (changes.py): "ends" when a job leaves
RUNNING or QUEUED, "jobs" when one becomes startable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from semantica.errors import NoSuchJob
from semantica.models import TERMINAL_STATES, ErrorKind, Job, JobError, JobState, check_transition
from semantica.supervisor.store.contract import Ends
from semantica.supervisor.store.postgres.changes import notify, notifying
from semantica.supervisor.store.postgres.connection import PGConnection
from semantica.supervisor.store.postgres.rows import EDGES, JOB_COLUMNS, clean, rows_by_id
from semantica.supervisor.store.records import Lease, StaleLease
from semantica.supervisor.store.rows import check_id, check_newest, check_retryable, job_from_row

# RUNNING -> DONE for each (id, lease, result, start) still under its lease: those.
_COMPLETE = notifying(
    "UPDATE jobs AS j SET state = 'DONE', result = e.result, finished_at = %s, "
    "started_at = greatest(j.started_at, e.start), error_kind = NULL, "
    "error_message = NULL, node_id = NULL "
    "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::float8[]) "
    "AS e(id, lease, result, start) "
    "WHERE j.id = e.id AND j.lease_id = e.lease AND j.state = 'RUNNING' "
    "RETURNING j.id, j.lease_id",
    "ends",
)


class PGMoves(PGConnection):
    """Ending attempts (done, failed, cancelled, interrupted, given back), cancelling
    queued jobs and retrying ended ones.

    Every end resolves, in its own transaction, the edges of the jobs that wait for
    the job that ended (``store/edges.py``: a statement after the end's, so that it
    sees an edge another node added while the end waited for its lock); the jobs
    that cancels are kept for :meth:`take_cascaded`.
    """

    _cascaded: list[int]

    def take_cascaded(self) -> list[int]:
        """The jobs ended by a dependency's end since the last call (see the contract)."""
        cascaded, self._cascaded = self._cascaded, []
        return cascaded

    def complete_many(self, ends: Ends) -> list[Lease]:
        """RUNNING -> DONE for each (lease, result, start), in one statement; returns the
        leases no longer current (skipped). See the contract for ``start``.

        A lease named twice ends its job once, with its first result: the second
        is stale, as it would be in a second call (one UPDATE of a row joined to
        two ends would take either).
        """
        check_transition(JobState.RUNNING, JobState.DONE)
        if not ends:
            return []
        first: dict[tuple[int, int], int] = {}  # each lease's first place in ends
        for n, (lease, _, _) in enumerate(ends):
            first.setdefault((lease.job_id, lease.lease_id), n)
        once = [ends[n] for n in first.values()]
        now = self.clock.time()
        cascaded: list[int] = []
        with self.transaction() as conn:
            cur = conn.execute(
                _COMPLETE,
                (
                    now,
                    [lease.job_id for lease, _, _ in once],
                    [lease.lease_id for lease, _, _ in once],
                    [None if result is None else clean(result.decode()) for _, result, _ in once],
                    [min(start, now) for _, _, start in once],
                ),
            )
            done = set(cur.fetchall())
            if done:
                ended = [(job_id, JobState.DONE.value) for job_id, _ in done]
                cascaded = EDGES.resolve(conn, ended, now)
        self._cascaded += cascaded
        return [
            lease
            for n, (lease, _, _) in enumerate(ends)
            if (lease.job_id, lease.lease_id) not in done
            or first[lease.job_id, lease.lease_id] != n
        ]

    def complete(self, lease: Lease, result: bytes | None, start: float = 0.0) -> None:
        """RUNNING -> DONE with ``result``; :meth:`complete_many` of one.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        if self.complete_many([(lease, result, start)]):
            raise StaleLease(f"job {lease.job_id} is not running under lease {lease.lease_id}")

    def set_progress(self, lease: Lease, fraction: float, message: str) -> None:
        """Record how far the job under ``lease`` has got (ignored if the lease is stale)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET progress = %s, progress_message = %s "
                "WHERE id = %s AND lease_id = %s AND state = 'RUNNING'",
                (fraction, clean(message), lease.job_id, lease.lease_id),
            )

    def cancel_queued(self, job_id: int, message: str) -> bool:
        """QUEUED -> CANCELLED; False (and nothing changed) if the job is not QUEUED."""
        check_transition(JobState.QUEUED, JobState.CANCELLED)
        now = self.clock.time()
        with self.transaction() as conn:
            cur = conn.execute(
                notifying(
                    "UPDATE jobs SET state = 'CANCELLED', finished_at = %s, error_kind = %s, "
                    "error_message = %s WHERE id = %s AND state = 'QUEUED' RETURNING id",
                    "ends",
                ),
                (now, ErrorKind.CANCELLED.value, clean(message), job_id),
            )
            if not cur.fetchall():
                return False
            cascaded = EDGES.resolve(conn, [(job_id, JobState.CANCELLED.value)], now)
        self._cascaded += cascaded
        return True

    def cancel_running(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> CANCELLED with ``error``.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        self._move(
            lease,
            JobState.CANCELLED,
            finished_at=self.clock.time(),
            error_kind=error.kind,
            error_message=clean(error.message),
        )

    def retry(self, job_id: int) -> Job:
        """FAILED or CANCELLED -> QUEUED now, with a fresh attempt budget (see the contract).

        Raises:
            NoSuchJob: no such job.
            BadInput: the job is not FAILED or CANCELLED, or a newer generation
                is queued, running or done, or a job it waits for ended badly
                (nothing changed).
        """
        return self._retry(job_id, dependents=False)[0]

    def retry_with_dependents(self, job_id: int) -> tuple[Job, list[int]]:
        """:meth:`retry`, and the jobs cancelled because of this one back too (see the
        contract); the job, and their ids.

        Raises:
            NoSuchJob, BadInput: as :meth:`retry`.
        """
        return self._retry(job_id, dependents=True)

    def _retry(self, job_id: int, dependents: bool) -> tuple[Job, list[int]]:
        check_id(job_id)
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT state, type, subject, generation FROM jobs WHERE id = %s FOR UPDATE",
                (job_id,),
            ).fetchone()
            if row is None:
                raise NoSuchJob(f"no job {job_id}")
            state = JobState(row[0])
            check_retryable(job_id, state)
            type_, subject, generation = row[1:]
            if subject is not None:
                newer = conn.execute(
                    "SELECT id, generation, state FROM jobs "
                    "WHERE type = %s AND subject = %s AND generation > %s "
                    "AND state IN ('QUEUED', 'RUNNING', 'DONE') ORDER BY generation DESC LIMIT 1",
                    (type_, subject, generation),
                ).fetchone()
                check_newest(job_id, subject, generation, newer)
            EDGES.check_retry(conn, job_id)
            below = EDGES.cancelled_below(conn, job_id) if dependents else []
            now = self.clock.time()
            conn.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = 0, run_after = %s, "
                "finished_at = NULL, worker_pid = NULL WHERE id = %s AND state = %s",
                (now, job_id, state.value),
            )
            EDGES.revive(conn, [job_id, *below], now)
            notify(conn, "jobs")
            (job,) = rows_by_id(conn, [job_id], JOB_COLUMNS)
        return job_from_row(job), below

    def fail(self, lease: Lease, error: JobError, retry_at: float | None) -> JobState:
        """End an attempt with ``error``: back to QUEUED at ``retry_at``, or FAILED if None.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        now = self.clock.time()
        if retry_at is None:
            self._move(
                lease,
                JobState.FAILED,
                finished_at=now,
                error_kind=error.kind,
                error_message=clean(error.message),
            )
            return JobState.FAILED
        self._move(
            lease,
            JobState.QUEUED,
            run_after=retry_at,
            error_kind=error.kind,
            error_message=clean(error.message),
        )
        return JobState.QUEUED

    def requeue_interrupted(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> QUEUED now without spending the attempt (a drain stopped it).

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        self._move(
            lease,
            JobState.QUEUED,
            attempts=lease.attempt - 1,
            run_after=self.clock.time(),
            error_kind=error.kind,
            error_message=clean(error.message),
        )

    def give_back(self, leases: Iterable[Lease]) -> int:
        """RUNNING -> QUEUED for leased jobs their worker never started; how many
        (stale leases skipped; see the contract)."""
        check_transition(JobState.RUNNING, JobState.QUEUED)
        given = list(leases)
        if not given:
            return 0
        with self.transaction() as conn:
            cur = conn.execute(
                notifying(
                    "UPDATE jobs AS j SET state = 'QUEUED', attempts = j.attempts - 1, "
                    "node_id = NULL FROM unnest(%s::bigint[], %s::bigint[]) AS g(id, lease) "
                    "WHERE j.id = g.id AND j.lease_id = g.lease AND j.state = 'RUNNING' "
                    "RETURNING j.id",
                    "jobs",
                    "ends",
                ),
                ([lease.job_id for lease in given], [lease.lease_id for lease in given]),
            )
        return len(cur.fetchall())

    def _move(self, lease: Lease, dst: JobState, **sets: Any) -> None:
        """Move the job under ``lease`` from RUNNING to ``dst``, setting columns, fenced."""
        check_transition(JobState.RUNNING, dst)
        assignments = ", ".join(f"{column} = %s" for column in sets)
        kinds = ("ends", "jobs") if dst == JobState.QUEUED else ("ends",)
        cascaded: list[int] = []
        with self.transaction() as conn:
            moved = conn.execute(
                notifying(
                    f"UPDATE jobs SET state = %s, node_id = NULL, {assignments} "
                    "WHERE id = %s AND lease_id = %s AND state = 'RUNNING' RETURNING id",
                    *kinds,
                ),
                (dst.value, *sets.values(), lease.job_id, lease.lease_id),
            ).fetchall()
            if not moved:
                raise StaleLease(f"job {lease.job_id} is not running under lease {lease.lease_id}")
            if dst in TERMINAL_STATES:
                cascaded = EDGES.resolve(conn, [(lease.job_id, dst.value)], self.clock.time())
        self._cascaded += cascaded
