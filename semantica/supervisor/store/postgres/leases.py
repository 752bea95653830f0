"""Leases on PostgreSQL: which queued jobs start next, and taking them, for many nodes.

A lease moves a job QUEUED -> RUNNING under a new lease id from the
``lease_ids`` sequence, so a lease taken on any node is newer than every lease
taken before it anywhere, and every later move of the job, on any node, is
fenced by it (moves.py). The lease records its node (``jobs.node_id``).

The start rules hold across nodes. While it leases from a queue, a lease holds
a transaction-scoped advisory lock on that queue (``pg_advisory_xact_lock``,
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
from semantica.supervisor.store.postgres.connection import reads
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
# Per queue that may start a job: its cap, how many of its jobs run (on every
# node), and its next jobs that nothing holds back now, best first.
_CANDIDATES = (
    "SELECT q.name, q.cap, q.running, c.priority, c.id, c.type, c.subject, c.run_after, "
    "c.require_charging, c.require_idle FROM ("
    "  SELECT n AS name, coalesce(s.max_running, 0) AS cap, "
    "  (SELECT count(*) FROM jobs AS r WHERE r.state = 'RUNNING' AND r.queue = n) AS running "
    "  FROM unnest(%(queues)s::text[]) AS n LEFT JOIN queues AS s ON s.name = n "
    "  WHERE NOT coalesce(s.paused, false)) AS q "
    "CROSS JOIN LATERAL (SELECT j.priority, j.id, j.type, j.subject, j.run_after, "
    "  j.require_charging, j.require_idle FROM jobs AS j "
    "  WHERE j.state = 'QUEUED' AND j.queue = q.name AND j.run_after <= %(now)s "
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
_TAKE = (
    "UPDATE jobs AS j SET state = 'RUNNING', attempts = j.attempts + 1, started_at = t.start, "
    "finished_at = NULL, lease_id = t.lease, worker_pid = %s, node_id = %s, progress = NULL, "
    "stop_kind = NULL, stop_message = NULL, "
    "progress_message = NULL FROM unnest(%s::bigint[], %s::bigint[], %s::float8[]) "
    "AS t(id, lease, start) WHERE j.id = t.id AND j.state = 'QUEUED' "
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
        """
        check_transition(JobState.QUEUED, JobState.RUNNING)
        if count < 1:
            return []
        node = self._joined()
        now = self.clock.time()
        with self.transaction() as conn:
            alive = conn.execute(
                "SELECT 1 FROM nodes WHERE id = %s AND state = 'alive' FOR KEY SHARE", (node,)
            ).fetchone()
            if alive is None:
                return []
            queues = [
                name
                for (name,) in conn.execute(
                    QUEUED_QUEUES + "SELECT name FROM live WHERE name IS NOT NULL"
                )
            ]
            if not queues:
                return []
            conn.execute(_LOCK, (QUEUE_LOCKS, queues))
            picked = _startable(conn, queues, count, now, on_ac, idle, lock=True)
            if not picked:
                return []
            subjects = [subject_key(c[2], c[3]) for c in picked if c[3] is not None]
            if subjects:
                conn.execute(_LOCK, (SUBJECT_LOCKS, subjects))
            lease_ids = [
                lease_id
                for (lease_id,) in conn.execute(
                    "SELECT nextval('lease_ids') FROM generate_series(1, %s)", (len(picked),)
                )
            ]
            ids = [c[1] for c in picked]
            starts = [self._next_start(now) for _ in picked]
            rows = conn.execute(
                _TAKE, (worker_pid, node, ids, sorted(lease_ids), starts)
            ).fetchall()
        taken = {row[0]: _lease(row) for row in rows}
        return [taken[job_id] for job_id in ids if job_id in taken]

    @reads
    def next_startable(
        self, count: int, cut: int, *, on_ac: bool = True, idle: bool = True
    ) -> JobsList:
        """The jobs that would start next if ``count`` workers were free now, in that
        order, as rows for a view: the choice of :meth:`lease_many`, nothing taken."""
        conn = self._live()
        queues = [
            name
            for (name,) in conn.execute(
                QUEUED_QUEUES + "SELECT name FROM live WHERE name IS NOT NULL"
            )
        ]
        picked = _startable(conn, queues, count, self.clock.time(), on_ac, idle, lock=False)
        ids = [c[1] for c in picked]
        rows = rows_by_id(conn, ids, view_columns(cut))
        found = {row[0]: cut_row(job_from_row(row), cut) for row in rows}
        return [found[job_id] for job_id in ids if job_id in found]


def _startable(
    conn: psycopg.Connection[Any],
    queues: list[str],
    count: int,
    now: float,
    on_ac: bool,
    idle: bool,
    *,
    lock: bool,
) -> list[Candidate]:
    """The candidates ``count`` leases would take now, in the order they would (see
    SQLite's ``_startable``: the same narrowing, then the rules decide each)."""
    if not queues or count < 1:
        return []
    facts = Blockers()
    candidates: list[Candidate] = []
    sql = _CANDIDATES.format(lock="FOR UPDATE SKIP LOCKED" if lock else "")
    args = {"queues": queues, "now": now, "on_ac": on_ac, "idle": idle, "count": count}
    for (
        queue,
        cap,
        running,
        priority,
        job_id,
        type_,
        subject,
        run_after,
        charging,
        idle_,
    ) in conn.execute(sql, args):
        facts.limits[queue], facts.running_per_queue[queue] = cap, running
        candidates.append((-priority, job_id, type_, subject, queue, run_after, charging, idle_))
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
