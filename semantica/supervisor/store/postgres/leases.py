"""Leases on PostgreSQL: which queued jobs start next, and taking them, for many nodes.

A lease moves a job QUEUED -> RUNNING under a new lease id from the
``lease_ids`` sequence, so a lease taken on any node is newer than every lease
taken before it anywhere, and every later move of the job, on any node, is
fenced by it (moves.py). The lease records its node (``jobs.node_id``).

The start rules hold across nodes. While it leases from a queue that has a
limit, a lease holds a transaction-scoped advisory lock on that queue
(``pg_advisory_xact_lock``,
keyed by the queue name's hash; taken in hash order, so two leases never wait
for each other in a cycle), and on the subject of each job it takes (the same
lock an enqueue of the subject takes). An advisory lock rather than the
queue's row lock: a queue need not have a row, and a lock on a row would be
written into the row and conflict with the row's updates (a pause); the lock
lives exactly as long as the transaction whose RUNNING jobs it counts. So:

* a queue's limit counts the RUNNING jobs of every node, read after the lock:
  only a lease makes a job RUNNING, and the other node's lease on that queue
  has committed (or not begun) by then;
* two jobs of one subject never start at once: the take re-checks that no job
  of the subject runs, after the subject's lock is held.

A queue without a limit is not locked: nothing is counted, and nodes leasing
from it at once never wait for each other's (group) commits, where a lock
held to the commit made them take turns.

The jobs themselves are read ``FOR UPDATE SKIP LOCKED``: a row another
transaction is changing (a cancel, a supersede) is passed over rather than
waited for. The decision is :func:`~..start_rules.pick`, as in SQLite; the
SQL only narrows the candidates, as an index would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from semantica.models import JobState, check_transition
from semantica.supervisor.store.contract import JobsList
from semantica.supervisor.store.postgres.connection import Unchanged, reads
from semantica.supervisor.store.postgres.enqueue import SUBJECT_LOCKS
from semantica.supervisor.store.postgres.nodes import PGNodes
from semantica.supervisor.store.postgres.rows import rows_by_id, view_columns
from semantica.supervisor.store.records import Lease
from semantica.supervisor.store.rows import cut_row, job_from_row
from semantica.supervisor.store.start_rules import Blockers, Candidate, pick

#: The key space of queue locks (pg_advisory_xact_lock(QUEUE_LOCKS, hash)).
QUEUE_LOCKS = 0x51554500

# The queues that have queued jobs, by name: a skip through jobs_queue_ready, one
# seek per such queue (as SQLite's).
QUEUED_QUEUES = (
    "WITH RECURSIVE live(name) AS ("
    "(SELECT queue FROM jobs WHERE state = 'QUEUED' ORDER BY queue LIMIT 1) "
    "UNION ALL SELECT (SELECT queue FROM jobs WHERE state = 'QUEUED' AND queue > live.name "
    "                  ORDER BY queue LIMIT 1) "
    "FROM live WHERE live.name IS NOT NULL) "
)
# The same, but none at all while no queued job is due (one seek in jobs_due): a lease
# then reads no queue's jobs (a backlog of delayed jobs cost every lease a walk
# through all of them).
_DUE_QUEUES = (
    "WITH RECURSIVE live(name) AS ("
    "(SELECT queue FROM jobs WHERE state = 'QUEUED' AND EXISTS (SELECT FROM jobs "
    "   WHERE state = 'QUEUED' AND run_after <= %(now)s) ORDER BY queue LIMIT 1) "
    "UNION ALL SELECT (SELECT queue FROM jobs WHERE state = 'QUEUED' AND queue > live.name "
    "                  ORDER BY queue LIMIT 1) "
    "FROM live WHERE live.name IS NOT NULL) "
)
# This node, if it is alive, its row held against the reapers (see nodes.py).
_ALIVE = "SELECT 1 FROM nodes WHERE id = %s AND state = 'alive' FOR KEY SHARE"
# Lock the queues with a limit that have due jobs, in hash order (the SELECT below the
# lock is sorted: the locks are taken in its order); their names.
_LOCK_QUEUES = (
    _DUE_QUEUES + "SELECT name FROM (SELECT name, pg_advisory_xact_lock(%(space)s, h) "
    "FROM (SELECT name, hashtext(name) AS h FROM live JOIN queues USING (name) "
    "      WHERE max_running > 0 ORDER BY h) AS sorted) AS locked"
)
# Per queue that may start a job: its cap, how many of its jobs run (on every
# node), and its next jobs that nothing holds back now, best first.
_CANDIDATES = (
    _DUE_QUEUES + "SELECT q.name, q.cap, q.running, c.priority, c.id, c.type, c.subject, "
    "c.run_after, c.require_charging, c.require_idle, c.deps_unmet FROM ("
    "  SELECT n AS name, coalesce(s.max_running, 0) AS cap, "
    "  (SELECT count(*) FROM jobs AS r WHERE r.state = 'RUNNING' AND r.queue = n) AS running "
    "  FROM (SELECT name AS n FROM live WHERE name IS NOT NULL) AS l "
    "  LEFT JOIN queues AS s ON s.name = n "
    "  WHERE NOT coalesce(s.paused, false)) AS q "
    "CROSS JOIN LATERAL (SELECT j.priority, j.id, j.type, j.subject, j.run_after, "
    "  j.require_charging, j.require_idle, j.deps_unmet FROM jobs AS j "
    "  WHERE j.state = 'QUEUED' AND j.queue = q.name AND j.run_after <= %(now)s "
    "  AND j.deps_unmet = 0 "
    "  AND (q.cap = 0 OR q.running < q.cap) "
    "  AND (j.subject IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS r WHERE r.type = j.type "
    "       AND r.subject = j.subject AND r.state = 'RUNNING')) "
    "  AND (NOT j.require_charging OR %(on_ac)s) AND (NOT j.require_idle OR %(idle)s) "
    "  ORDER BY j.priority DESC, j.id LIMIT %(count)s {lock}) AS c"
)
_LOCK = (
    "SELECT count(pg_advisory_xact_lock(%s, h)) FROM "
    "(SELECT DISTINCT hashtext(k) AS h FROM unnest(%s::text[]) AS k ORDER BY h) AS keys"
)
# Take the picked jobs that are still free, under new lease ids, increasing in the
# order given (nextval over the sorted rows).
_TAKE = (
    "WITH t AS (SELECT id, start, nextval('lease_ids') AS lease FROM (SELECT id, start "
    "  FROM unnest(%s::bigint[], %s::float8[]) WITH ORDINALITY AS u(id, start, n) "
    "  ORDER BY n) AS sorted) "
    "UPDATE jobs AS j SET state = 'RUNNING', attempts = j.attempts + 1, started_at = t.start, "
    "finished_at = NULL, lease_id = t.lease, worker_pid = %s, node_id = %s, progress = NULL, "
    "stop_kind = NULL, stop_message = NULL, progress_message = NULL FROM t "
    "WHERE j.id = t.id AND j.state = 'QUEUED' "
    "AND (j.subject IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS r WHERE r.type = j.type "
    "     AND r.subject = j.subject AND r.state = 'RUNNING')) "
    "RETURNING j.id, j.type, j.queue, j.payload, j.attempts, j.max_attempts, j.timeout_s, "
    "j.backoff_s, j.created_at, t.lease"
)


def subject_key(type_: str, subject: str) -> str:
    """The text whose hash keys a subject's lock (the same as enqueue.py's)."""
    return f"{type_}\x01{subject}"


class PGLeases(PGNodes):
    """Taking jobs to run: the start order, the start rules across nodes, and lease ids."""

    _last_start: float  # started_at of this store's latest lease: later ones come after it

    def lease(self, worker_pid: int, *, on_ac: bool = True, idle: bool = True) -> Lease | None:
        """Atomically take the next job that may start now for a worker, or None (see
        the contract); :meth:`lease_many` of one."""
        leases = self.lease_many(worker_pid, 1, on_ac=on_ac, idle=idle)
        return leases[0] if leases else None

    def _next_start(self, now: float) -> float:
        """``started_at`` for a new lease: now, and after every earlier one of this store."""
        self._last_start = max(now, self._last_start + 1e-6)
        return self._last_start

    def lease_many(
        self, worker_pid: int, count: int, *, on_ac: bool = True, idle: bool = True
    ) -> list[Lease]:
        """Up to ``count`` jobs for one worker, in one transaction, in the order it should
        run them: the jobs ``count`` calls of :meth:`lease` would take (see the contract).

        Nothing is taken while this node is not alive (declared dead: its owner must
        stop its jobs and join again, as :meth:`heartbeat` says).

        Its statements: the node's row, the queue locks, the candidates (read by a
        statement of their own, after the locks are held), the subject locks if any,
        and the take (lease ids drawn in it). A lease that takes nothing is undone
        (its locks let go at once) and is no write.
        """
        check_transition(JobState.QUEUED, JobState.RUNNING)
        if count < 1:
            return []
        node = self._joined()
        now = self.clock.time()
        ids: list[int] = []
        took = None
        with self.transaction() as conn:
            alive = conn.execute(_ALIVE, (node,))
            locked = conn.execute(_LOCK_QUEUES, {"now": now, "space": QUEUE_LOCKS})
            found = _candidates(conn, count, now, on_ac, idle, lock=True)
            if alive.fetchone() is None:
                raise Unchanged
            # A queue's count is good only under its lock: a queue given a limit
            # between the two statements (or its first job) waits for the next lease.
            mine = {name for (name,) in locked}
            rows = [row for row in found if row[1] == 0 or row[0] in mine]
            picked = _pick(rows, count, now, on_ac, idle)
            if not picked:
                raise Unchanged
            subjects = [subject_key(c[2], c[3]) for c in picked if c[3] is not None]
            if subjects:
                conn.execute(_LOCK, (SUBJECT_LOCKS, subjects))
            ids = [c[1] for c in picked]
            starts = [self._next_start(now) for _ in picked]
            took = conn.execute(_TAKE, (ids, starts, worker_pid, node))
        if took is None:
            return []
        taken = {row[0]: _lease(row) for row in took}
        return [taken[job_id] for job_id in ids if job_id in taken]

    @reads
    def next_startable(
        self, count: int, cut: int, *, on_ac: bool = True, idle: bool = True
    ) -> JobsList:
        """The jobs that would start next if ``count`` workers were free now, in that
        order, as rows for a view: the choice of :meth:`lease_many`, nothing taken."""
        conn = self._live()
        now = self.clock.time()
        found = _candidates(conn, count, now, on_ac, idle, lock=False)
        picked = _pick(found.fetchall(), count, now, on_ac, idle)
        ids = [c[1] for c in picked]
        rows = rows_by_id(conn, ids, view_columns(cut))
        found_rows = {row[0]: cut_row(job_from_row(row), cut) for row in rows}
        return [found_rows[job_id] for job_id in ids if job_id in found_rows]


def _candidates(
    conn: psycopg.Connection[Any], count: int, now: float, on_ac: bool, idle: bool, *, lock: bool
) -> psycopg.Cursor[Any]:
    """The rows from which ``count`` leases would pick now: per queue with due jobs, its
    cap and running count, and its next jobs (see SQLite's ``_startable``: the same
    narrowing, then the rules decide each)."""
    sql = _CANDIDATES.format(lock="FOR UPDATE SKIP LOCKED" if lock else "")
    args = {"now": now, "on_ac": on_ac, "idle": idle, "count": max(count, 1)}
    return conn.execute(sql, args)


def _pick(
    rows: Sequence[Sequence[Any]], count: int, now: float, on_ac: bool, idle: bool
) -> list[Candidate]:
    """The candidates ``count`` leases would take now, in the order they would."""
    if count < 1:
        return []
    facts = Blockers()
    candidates: list[Candidate] = []
    for row in rows:
        queue, cap, running, priority, job_id, type_, subject, run_after, charging, idle_, unmet = (
            row
        )
        facts.limits[queue], facts.running_per_queue[queue] = cap, running
        candidates.append(
            (-priority, job_id, type_, subject, queue, run_after, charging, idle_, unmet)
        )
    return pick(candidates, facts, count, now, on_ac, idle)


def _lease(row: Sequence[Any]) -> Lease:
    job_id, type_, queue, payload, attempt, max_attempts, timeout, backoff, created_at, lid = row
    return Lease(
        lease_id=lid,
        job_id=job_id,
        type=type_,
        queue=queue,
        payload=payload.encode(),
        attempt=attempt,
        max_attempts=max_attempts,
        timeout=timeout,
        backoff=backoff,
        created_at=created_at,
    )
