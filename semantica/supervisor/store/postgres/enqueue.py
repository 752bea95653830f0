"""Enqueue on PostgreSQL: insert prepared jobs, with dedup and supersede by subject.

The same rules as SQLite's (contract.py, :meth:`JobStore.insert`). Jobs
without a subject go in one ``INSERT ... SELECT FROM unnest(...)`` a run of
them, whatever its length. Two nodes enqueueing a job of one subject at once
take a transaction-scoped advisory lock on the subject first, so the
generation rules see each other's jobs (one waits for the other's commit).
A new startable job notifies the other nodes ("jobs", delivered at commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from semantica.errors import BadInput
from semantica.fresh_jobs import start_time
from semantica.models import (
    GENERATION_MAX,
    Job,
    JobSpec,
    JobState,
    check_transition,
)
from semantica.supervisor.store.postgres.changes import notify
from semantica.supervisor.store.postgres.connection import PGConnection
from semantica.supervisor.store.postgres.rows import EDGES, JOB_COLUMNS
from semantica.supervisor.store.records import EnqueueResult, Prepared
from semantica.supervisor.store.rows import (
    job_from_row,
    new_job,
    note_superseded,
    queued_and_running,
)

_INSERT_COLUMNS = (
    "type, queue, subject, generation, priority, state, payload, max_attempts, timeout_s, "
    "backoff_s, require_charging, require_idle, created_at, run_after"
)
# One row per element of the arrays, in their order (ids are given in that order).
_INSERT_MANY = (
    f"INSERT INTO jobs ({_INSERT_COLUMNS}) "
    "SELECT type, queue, NULL, NULL, priority, 'QUEUED', payload, max_attempts, timeout_s, "
    "backoff_s, require_charging, require_idle, %s, run_after FROM unnest("
    "%s::text[], %s::text[], %s::int[], %s::text[], %s::int[], %s::float8[], %s::float8[], "
    "%s::bool[], %s::bool[], %s::float8[]) WITH ORDINALITY AS t(type, queue, priority, "
    "payload, max_attempts, timeout_s, backoff_s, require_charging, require_idle, run_after, n) "
    "ORDER BY n RETURNING id"
)
_INSERT_ONE = (
    f"INSERT INTO jobs ({_INSERT_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, 'QUEUED', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
#: The key space of subject locks (pg_advisory_xact_lock(SUBJECT_LOCKS, hash)).
SUBJECT_LOCKS = 0x53554200


class PGEnqueue(PGConnection):
    """Adding jobs: plain ones many rows a statement, those with a subject one by one
    under the generation rules (dedup, supersede), all in one transaction; those that
    wait for other jobs one by one, each after the jobs it waits for."""

    _cascaded: list[int]

    def insert(self, prepared: Sequence[Prepared]) -> EnqueueResult:
        """Insert prepared jobs, all in one transaction (all or none); see the contract.

        Raises:
            BadInput: a subject has no generation left; nothing was inserted.
        """
        now = self.clock.time()
        rows = []
        for item in prepared:
            rows.append((item.spec, item.payload, start_time(item.spec, now), item.edges))
        result = EnqueueResult(added_at=now)
        cascaded: list[int] = []
        created_at = datetime.fromtimestamp(now, UTC)
        added: dict[int, list[Job]] = {}
        with self.transaction() as conn:
            names = sorted({item.spec.queue for item in prepared})
            if names:
                conn.execute(
                    "INSERT INTO queues (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (names,),
                )
            subjects = sorted({(s.type, s.subject) for s, _, _, _ in rows if s.subject is not None})
            if subjects:
                conn.execute(
                    "SELECT count(pg_advisory_xact_lock(%s, hashtext(t || chr(1) || s))) "
                    "FROM unnest(%s::text[], %s::text[]) AS u(t, s)",
                    (SUBJECT_LOCKS, [t for t, _ in subjects], [s for _, s in subjects]),
                )
            plain: list[tuple[JobSpec, str, float]] = []
            for spec, payload, run_after, edges in rows:
                if spec.subject is None and not edges:
                    plain.append((spec, payload, run_after))
                    continue
                self._insert_plain(conn, plain, now, created_at, result)
                plain = []
                if spec.subject is None:
                    (job_id,) = conn.execute(
                        _INSERT_ONE, _one_args(spec, None, payload, now, run_after)
                    ).fetchone() or (0,)
                    job = new_job(job_id, spec, None, payload, now, created_at, run_after)
                    if not EDGES.add_planned(conn, job, edges, result.jobs, now):
                        cascaded.append(job.id)
                    result.jobs.append(job)
                    continue
                generation = spec.generation
                live = self._live_generation(conn, spec, generation)
                if live is not None:
                    job = job_from_row(live)
                    job.deduplicated = True
                    added.setdefault(job.id, []).append(job)
                    result.jobs.append(job)
                    continue
                if generation is None:
                    row = conn.execute(
                        "SELECT max(generation) FROM jobs WHERE type = %s AND subject = %s",
                        (spec.type, spec.subject),
                    ).fetchone()
                    newest = row[0] if row else None
                    if newest is not None and newest >= GENERATION_MAX:
                        raise BadInput(
                            f"subject {spec.subject!r} is at generation {newest}, the "
                            "largest there may be: no newer one can follow"
                        )
                    generation = (newest or 0) + 1
                (job_id,) = conn.execute(
                    _INSERT_ONE, _one_args(spec, generation, payload, now, run_after)
                ).fetchone() or (0,)
                self._supersede_older(conn, spec, generation, job_id, now, result, added)
                job = new_job(job_id, spec, generation, payload, now, created_at, run_after)
                if edges and not EDGES.add_planned(conn, job, edges, result.jobs, now):
                    cascaded.append(job.id)
                added[job_id] = [job]
                result.jobs.append(job)
            self._insert_plain(conn, plain, now, created_at, result)
            if result.superseded:
                ended = [(job_id, JobState.SUPERSEDED.value) for job_id in result.superseded]
                cascaded += EDGES.resolve(conn, ended, now)
            if result.jobs and any(not job.deduplicated for job in result.jobs):
                notify(conn, "jobs")
            if cascaded:
                notify(conn, "ends")
        self._cascaded += cascaded
        return result

    @staticmethod
    def _insert_plain(
        conn: psycopg.Connection[Any],
        plain: list[tuple[JobSpec, str, float]],
        now: float,
        created_at: datetime,
        result: EnqueueResult,
    ) -> None:
        """Insert jobs without a subject, all in one statement (arrays, one per column)."""
        if not plain:
            return
        specs = [spec for spec, _, _ in plain]
        args = (
            now,
            [s.type for s in specs],
            [s.queue for s in specs],
            [s.priority for s in specs],
            [payload for _, payload, _ in plain],
            [s.max_attempts for s in specs],
            [s.timeout for s in specs],
            [s.backoff for s in specs],
            [s.require_charging for s in specs],
            [s.require_idle for s in specs],
            [run_after for _, _, run_after in plain],
        )
        # Ids come from the sequence in the order rows are made; RETURNING itself
        # promises no order.
        ids = sorted(job_id for (job_id,) in conn.execute(_INSERT_MANY, args).fetchall())
        for job_id, (spec, payload, run_after) in zip(ids, plain, strict=True):
            result.jobs.append(new_job(job_id, spec, None, payload, now, created_at, run_after))

    @staticmethod
    def _live_generation(
        conn: psycopg.Connection[Any], spec: JobSpec, generation: int | None
    ) -> Sequence[Any] | None:
        """The QUEUED or RUNNING job of the subject that makes ``generation`` a duplicate."""
        if generation is None:
            return None
        row: Sequence[Any] | None = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs "
            "WHERE type = %s AND subject = %s AND state IN ('QUEUED', 'RUNNING') "
            "AND generation >= %s ORDER BY generation DESC, id DESC LIMIT 1",
            (spec.type, spec.subject, generation),
        ).fetchone()
        return row

    @staticmethod
    def _supersede_older(
        conn: psycopg.Connection[Any],
        spec: JobSpec,
        generation: int,
        job_id: int,
        now: float,
        result: EnqueueResult,
        added: dict[int, list[Job]],
    ) -> None:
        check_transition(JobState.QUEUED, JobState.SUPERSEDED)
        older = conn.execute(
            "SELECT id, state FROM jobs WHERE type = %s AND subject = %s "
            "AND state IN ('QUEUED', 'RUNNING') AND generation < %s",
            (spec.type, spec.subject, generation),
        ).fetchall()
        queued, running = queued_and_running(older)
        if queued:
            rows = conn.execute(
                "UPDATE jobs SET state = 'SUPERSEDED', superseded_by = %s, finished_at = %s "
                "WHERE id = ANY(%s::bigint[]) AND state = 'QUEUED' RETURNING id",
                (job_id, now, queued),
            ).fetchall()
            note_superseded(result, added, [old_id for (old_id,) in rows], job_id, now)
            notify(conn, "ends")
        if spec.supersede_running:
            result.running_older.extend((old_id, job_id) for old_id in running)


def _one_args(
    spec: JobSpec, generation: int | None, payload: str, now: float, run_after: float
) -> tuple[Any, ...]:
    return (
        spec.type,
        spec.queue,
        spec.subject,
        generation,
        spec.priority,
        payload,
        spec.max_attempts,
        spec.timeout,
        spec.backoff,
        spec.require_charging,
        spec.require_idle,
        now,
        run_after,
    )
