"""The moves of a job after it was leased, and the moves of a queued or ended one.

Every move is checked against the transition table in :mod:`semantica.models`
before its UPDATE runs, and each UPDATE names the state it expects (and, for a
running job, its lease id): a late message from a worker that was given up on
changes nothing (:class:`~..records.StaleLease`, or skipped where said).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from semantica.errors import NoSuchJob
from semantica.models import TERMINAL_STATES, ErrorKind, Job, JobError, JobState, check_transition
from semantica.supervisor.store.contract import Ends
from semantica.supervisor.store.records import Lease, StaleLease
from semantica.supervisor.store.rows import (
    JOB_COLUMNS,
    check_id,
    check_newest,
    check_retryable,
    job_from_row,
)
from semantica.supervisor.store.sqlite.connection import SQLiteConnection, store_error
from semantica.supervisor.store.sqlite.rows import EDGES, rows_by_id

# RUNNING -> DONE for a batch of ends, in one statement: a VALUES list of
# (id, lease id, result (JSON text, or null), start), at ?1 (see complete_rows). Each
# job is looked up by its id (+state: not through an index on the state). Fenced: a
# job moves only under its current lease. The ends travel as bound parameters, not
# as one JSON array: json_extract of four fields a row cost about a quarter of the
# statement (2-3 us a job at 64 a statement).
_COMPLETE_ALL = (
    "UPDATE jobs SET state = 'DONE', result = e.column3, finished_at = ?1, "
    "started_at = max(started_at, e.column4), error_kind = NULL, error_message = NULL "
    "FROM (VALUES {rows}) AS e "
    "WHERE jobs.id = e.column1 AND jobs.lease_id = e.column2 AND +jobs.state = 'RUNNING'"
)
#: Ends per _COMPLETE_ALL statement, at most (4 parameters each, far under SQLite's
#: limit). A batch is padded with rows that match no job up to the next power of
#: two, so a few statement texts serve every size and stay in sqlite3's cache.
END_CHUNK = 64
_NO_END = (None, None, None, None)
# The same for one end, when the batch must learn which of its leases were stale.
_COMPLETE_ONE = (
    "UPDATE jobs SET state = 'DONE', result = ?, finished_at = ?, "
    "started_at = max(started_at, ?), error_kind = NULL, error_message = NULL "
    "WHERE id = ? AND lease_id = ? AND state = 'RUNNING'"
)
# RUNNING -> QUEUED, attempt not spent, for a JSON array of [id, lease id].
_GIVE_BACK = (
    "UPDATE jobs SET state = 'QUEUED', attempts = attempts - 1 FROM json_each(?) AS g "
    "WHERE jobs.id = json_extract(g.value, '$[0]') "
    "AND jobs.lease_id = json_extract(g.value, '$[1]') AND +jobs.state = 'RUNNING'"
)

_encode = msgspec.json.Encoder().encode


def _result_text(result: bytes | None) -> str | None:
    return None if result is None else result.decode()


#: An end as complete_rows takes it: job id, lease id, result (JSON text or None), start.
EndRow = tuple[int, int, str | None, float]


@functools.cache
def _complete_all(rows: int) -> str:
    """_COMPLETE_ALL with ``rows`` rows in its VALUES list."""
    return _COMPLETE_ALL.format(rows=", ".join(["(?, ?, ?, ?)"] * rows))


def complete_rows(conn: sqlite3.Connection, now: float, ends: Sequence[EndRow]) -> int:
    """RUNNING -> DONE at ``now`` for each end, END_CHUNK a statement; how many moved.

    The store's statement for a batch of ends (also what the benchmark's bound
    times: bench/bound_parts.py).
    """
    moved = 0
    for at in range(0, len(ends), END_CHUNK):
        chunk = ends[at : at + END_CHUNK]
        size = 1 << (len(chunk) - 1).bit_length()
        params: list[Any] = [now]
        for end in chunk:
            params.extend(end)
        for _ in range(size - len(chunk)):
            params.extend(_NO_END)
        moved += conn.execute(_complete_all(size), params).rowcount
    return moved


class SQLiteMoves(SQLiteConnection):
    """Ending attempts (done, failed, cancelled, interrupted, given back), cancelling
    queued jobs, retrying ended ones, and recovering after a crash.

    Every end resolves, in its own transaction, the edges of the jobs that wait for
    the job that ended (``store/edges.py``); the jobs that cancels are kept for
    :meth:`take_cascaded`.
    """

    _cascaded: list[int]

    def take_cascaded(self) -> list[int]:
        """The jobs ended by a dependency's end since the last call (see the contract)."""
        cascaded, self._cascaded = self._cascaded, []
        return cascaded

    def complete_many(self, ends: Ends) -> list[Lease]:
        """RUNNING -> DONE for each (lease, result, start), in one write; returns stale leases.

        Like :meth:`complete` for each, but a lease no longer current is skipped
        and returned instead of raising. ``start`` is when the worker started
        the job (Unix time; 0 if unknown): a job handed over behind others
        starts after it was leased, and ``started_at`` becomes the later of the two.

        One statement moves them all. If it moved fewer than it was given (a
        lease was stale, or named twice), it is undone and each end is moved on
        its own, so that the stale ones are known; that is rare (a worker given
        up on), and costs no more than the one-by-one moves always did.
        """
        check_transition(JobState.RUNNING, JobState.DONE)
        if not ends:
            return []
        now = self.clock.time()
        stale: list[Lease] = []
        with self.transaction() as conn:
            conn.execute("SAVEPOINT ends")
            if len(ends) == 1:  # (one end: its own statement, no JSON to build and read)
                lease, result, start = ends[0]
                one = (_result_text(result), now, min(start, now), lease.job_id, lease.lease_id)
                moved = conn.execute(_COMPLETE_ONE, one).rowcount
            else:
                rows = [
                    (lease.job_id, lease.lease_id, _result_text(result), min(start, now))
                    for lease, result, start in ends
                ]
                moved = complete_rows(conn, now, rows)
            if moved == len(ends):
                done = [(lease.job_id, JobState.DONE.value) for lease, _, _ in ends]
            else:
                conn.execute("ROLLBACK TO ends")
                done = []
                for lease, result, start in ends:
                    one = (_result_text(result), now, min(start, now), lease.job_id, lease.lease_id)
                    if conn.execute(_COMPLETE_ONE, one).rowcount != 1:
                        stale.append(lease)
                    else:
                        done.append((lease.job_id, JobState.DONE.value))
            conn.execute("RELEASE ends")
            cascaded = EDGES.resolve(conn, done, now) if done else []
        self._cascaded += cascaded
        return stale

    def set_progress(self, lease: Lease, fraction: float, message: str) -> None:
        """Record how far the job under ``lease`` has got (ignored if the lease is stale)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET progress = ?, progress_message = ? "
                "WHERE id = ? AND lease_id = ? AND state = 'RUNNING'",
                (fraction, message, lease.job_id, lease.lease_id),
            )

    def cancel_queued(self, job_id: int, message: str) -> bool:
        """QUEUED -> CANCELLED; False (and nothing changed) if the job is not QUEUED."""
        check_transition(JobState.QUEUED, JobState.CANCELLED)
        now = self.clock.time()
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'CANCELLED', finished_at = ?, error_kind = ?, "
                "error_message = ? WHERE id = ? AND state = 'QUEUED'",
                (now, ErrorKind.CANCELLED.value, message, job_id),
            )
            if cur.rowcount != 1:
                return False
            cascaded = EDGES.resolve(conn, [(job_id, JobState.CANCELLED.value)], now)
        self._cascaded += cascaded
        return True

    def cancel_running(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> CANCELLED with ``error``, if ``lease`` is still current.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        self._move(
            lease,
            JobState.CANCELLED,
            finished_at=self.clock.time(),
            error_kind=error.kind,
            error_message=error.message,
        )

    def retry(self, job_id: int) -> Job:
        """FAILED or CANCELLED -> QUEUED now, with a fresh attempt budget.

        A job with a subject is not retried once a newer generation of its
        ``(type, subject)`` is queued, running or DONE: as with an enqueue of an
        older generation, the newer one wins (it would supersede this one, or
        this one would undo its work). Nor is a job while a job it waits for
        (``--after``) ended badly: :meth:`retry_with_dependents` of that one.

        Raises:
            NoSuchJob: no such job.
            BadInput: the job is not FAILED or CANCELLED, or a newer generation
                is queued, running or done, or a job it waits for ended badly
                (nothing changed).
        """
        return self._retry(job_id, dependents=False)[0]

    def retry_with_dependents(self, job_id: int) -> tuple[Job, list[int]]:
        """:meth:`retry`, and the jobs cancelled because of this one come back too, down
        the chain, in the same transaction (see the contract); the job, and theirs ids.

        Raises:
            NoSuchJob, BadInput: as :meth:`retry`.
        """
        return self._retry(job_id, dependents=True)

    def _retry(self, job_id: int, dependents: bool) -> tuple[Job, list[int]]:
        check_id(job_id)
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT state, type, subject, generation FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise NoSuchJob(f"no job {job_id}")
            state = JobState(row[0])
            check_retryable(job_id, state)
            type_, subject, generation = row[1:]
            if subject is not None:
                newer = conn.execute(
                    "SELECT id, generation, state FROM jobs INDEXED BY jobs_subject "
                    "WHERE type = ? AND subject = ? AND generation > ? "
                    "AND state IN ('QUEUED', 'RUNNING', 'DONE') ORDER BY generation DESC LIMIT 1",
                    (type_, subject, generation),
                ).fetchone()
                check_newest(job_id, subject, generation, newer)
            EDGES.check_retry(conn, job_id)
            below = EDGES.cancelled_below(conn, job_id) if dependents else []
            now = self.clock.time()
            conn.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = 0, run_after = ?, "
                "finished_at = NULL, worker_pid = NULL WHERE id = ? AND state = ?",
                (now, job_id, state.value),
            )
            EDGES.revive(conn, [job_id, *below], now)
        try:
            (row,) = rows_by_id(self._conn, [job_id], JOB_COLUMNS)
        except sqlite3.Error as exc:
            raise store_error(exc, "reading the job store failed") from None
        return job_from_row(row), below

    def complete(self, lease: Lease, result: bytes | None, start: float = 0.0) -> None:
        """RUNNING -> DONE with ``result`` (JSON text), if ``lease`` is still current.

        :meth:`complete_many` of one (``start`` as there).

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        if self.complete_many([(lease, result, start)]):
            raise StaleLease(f"job {lease.job_id} is not running under lease {lease.lease_id}")

    def fail(self, lease: Lease, error: JobError, retry_at: float | None) -> JobState:
        """End an attempt with ``error``: back to QUEUED at ``retry_at``, or FAILED if None.

        Returns the job's new state.

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
                error_message=error.message,
            )
            return JobState.FAILED
        self._move(
            lease,
            JobState.QUEUED,
            run_after=retry_at,
            error_kind=error.kind,
            error_message=error.message,
        )
        return JobState.QUEUED

    def requeue_interrupted(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> QUEUED without spending the attempt (a drain stopped it).

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        self._move(
            lease,
            JobState.QUEUED,
            attempts=lease.attempt - 1,
            run_after=self.clock.time(),
            error_kind=error.kind,
            error_message=error.message,
        )

    def give_back(self, leases: Iterable[Lease]) -> int:
        """RUNNING -> QUEUED for leased jobs their worker never started; returns how many.

        A worker that takes short jobs a few at a time hands back the ones it
        had not begun (see the pool's prefetch). The attempt is not spent and
        nothing else about the job changes: it runs next as if it had waited in
        the queue. Leases no longer current are skipped.
        """
        check_transition(JobState.RUNNING, JobState.QUEUED)
        given = [[lease.job_id, lease.lease_id] for lease in leases]
        if not given:
            return 0
        with self.transaction() as conn:
            return int(conn.execute(_GIVE_BACK, (_encode(given).decode(),)).rowcount)

    def recover_running(self) -> int:
        """At start: put every RUNNING job (its supervisor died) back in the queue.

        The attempt is not spent: the job was not at fault. Returns how many.
        """
        check_transition(JobState.RUNNING, JobState.QUEUED)
        now = self.clock.time()
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = attempts - 1, run_after = ?, "
                "error_kind = 'interrupted', "
                "error_message = 'the supervisor stopped while the job ran', "
                "worker_pid = NULL WHERE state = 'RUNNING'",
                (now,),
            )
            return cur.rowcount

    def _move(self, lease: Lease, dst: JobState, **sets: Any) -> None:
        """Move the job under ``lease`` from RUNNING to ``dst``, setting columns, fenced."""
        check_transition(JobState.RUNNING, dst)
        assignments = ", ".join(f"{column} = ?" for column in sets)
        cascaded: list[int] = []
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET state = ?, {assignments} "
                "WHERE id = ? AND lease_id = ? AND state = 'RUNNING'",
                (dst.value, *sets.values(), lease.job_id, lease.lease_id),
            )
            if cur.rowcount != 1:
                raise StaleLease(f"job {lease.job_id} is not running under lease {lease.lease_id}")
            if dst in TERMINAL_STATES:
                cascaded = EDGES.resolve(conn, [(lease.job_id, dst.value)], self.clock.time())
        self._cascaded += cascaded

    # ------------------------------------------------------------------ reads
