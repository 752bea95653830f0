"""Enqueue on SQLite: insert prepared jobs, with dedup and supersede by subject.

The cost per job grows neither with a subject's finished history (the
``jobs_live_subject`` index holds only its QUEUED and RUNNING jobs) nor with
the size of the batch. Jobs without a subject go in many rows a statement
(``inserts.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from semantica.errors import BadInput
from semantica.fresh_jobs import start_time
from semantica.models import (
    GENERATION_MAX,
    Job,
    JobSpec,
    JobState,
    check_transition,
)
from semantica.supervisor.store.records import EnqueueResult, Prepared
from semantica.supervisor.store.rows import (
    JOB_COLUMNS,
    job_from_row,
    new_job,
    note_superseded,
    queued_and_running,
)
from semantica.supervisor.store.sqlite.connection import SQLiteConnection
from semantica.supervisor.store.sqlite.inserts import (
    INSERT_COLUMNS,
    INSERT_ROW,
    RUN_MIN,
    Row,
    insert_args,
    insert_run,
    insert_values,
    run_keys,
)
from semantica.supervisor.store.sqlite.rows import EDGES, IDS_IN_JSON, json_ids
from semantica.supervisor.store.sqlite.subjects import insert_subject_run


class SQLiteEnqueue(SQLiteConnection):
    """Adding jobs: plain ones many rows a statement, those with a subject under the
    generation rules (dedup, supersede), a run of distinct subjects at once and the
    others one by one, all in one transaction; those that wait for other jobs one by
    one, each after the jobs it waits for."""

    _cascaded: list[int]

    def insert(self, prepared: Sequence[Prepared]) -> EnqueueResult:
        """Insert prepared jobs, all in one transaction (all or none).

        Jobs with a subject follow the generation rules, in order, so a later
        spec of the batch sees the earlier ones:

        * no generation: one above the newest of its ``(type, subject)``;
        * a generation not above a QUEUED or RUNNING one of the subject: that
          job is returned (``deduplicated``) and nothing is added;
        * otherwise it is added, and the QUEUED jobs of the subject with a lower
          generation become SUPERSEDED (``superseded_by`` = the new job).

        The cost per job grows neither with the subject's finished history
        (``jobs_live_subject`` holds only its QUEUED and RUNNING jobs) nor with
        the size of the batch.

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
        # This batch's jobs with a subject (an id may come twice), for supersedes among them.
        added: dict[int, list[Job]] = {}
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO queues (name) VALUES (?)",
                [(name,) for name in {item.spec.queue for item in prepared}],
            )
            plain: list[Row] = []  # no subject: inserted together
            subjects: list[Row] = []  # distinct subjects, no generation: together
            pairs: set[tuple[str, str | None]] = set()
            for spec, payload, run_after, edges in rows:
                if spec.subject is None and not edges:
                    if subjects:  # (most batches have none: no call, nothing made, per job)
                        insert_subject_run(conn, subjects, now, created_at, result, added)
                        subjects, pairs = [], set()
                    plain.append((spec, payload, run_after))
                    continue
                # The generation rules (and the jobs waited for) see every spec before
                # this one: insert those first.
                self._insert_plain(conn, plain, now, created_at, result)
                plain = []
                pair = (spec.type, spec.subject)
                if not edges and spec.generation is None and pair not in pairs:
                    subjects.append((spec, payload, run_after))
                    pairs.add(pair)
                    continue
                insert_subject_run(conn, subjects, now, created_at, result, added)
                subjects, pairs = [], set()
                if spec.subject is None:
                    (job_id,) = conn.execute(
                        f"INSERT INTO jobs ({INSERT_COLUMNS}) VALUES {INSERT_ROW} RETURNING id",
                        insert_args(spec, None, payload, now, run_after),
                    ).fetchone()
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
                    (newest,) = conn.execute(
                        "SELECT max(generation) FROM jobs WHERE type = ? AND subject = ?",
                        (spec.type, spec.subject),
                    ).fetchone()
                    if newest is not None and newest >= GENERATION_MAX:
                        raise BadInput(
                            f"subject {spec.subject!r} is at generation {newest}, the "
                            "largest there may be: no newer one can follow"
                        )
                    generation = (newest or 0) + 1
                (job_id,) = conn.execute(
                    f"INSERT INTO jobs ({INSERT_COLUMNS}) VALUES {INSERT_ROW} RETURNING id",
                    insert_args(spec, generation, payload, now, run_after),
                ).fetchone()
                self._supersede_older(conn, spec, generation, job_id, now, result, added)
                job = new_job(job_id, spec, generation, payload, now, created_at, run_after)
                if edges and not EDGES.add_planned(conn, job, edges, result.jobs, now):
                    cascaded.append(job.id)
                added[job_id] = [job]
                result.jobs.append(job)
            self._insert_plain(conn, plain, now, created_at, result)
            insert_subject_run(conn, subjects, now, created_at, result, added)
            if result.superseded:
                ended = [(job_id, JobState.SUPERSEDED.value) for job_id in result.superseded]
                cascaded += EDGES.resolve(conn, ended, now)
        self._cascaded += cascaded
        return result

    def _insert_plain(
        self,
        conn: sqlite3.Connection,
        plain: list[Row],
        now: float,
        created_at: datetime,
        result: EnqueueResult,
    ) -> None:
        """Insert jobs without a subject, many rows a statement, in order (their ids too):
        runs of jobs alike but for the payload (:data:`_INSERT_RUN`), the rest in VALUES
        chunks."""
        odd: list[Row] = []  # jobs in short runs, waiting for a chunk
        keys = run_keys(plain)
        start = 0
        while start < len(plain):
            key = keys[start]
            stop = start + 1
            while stop < len(plain) and keys[stop] == key:
                stop += 1
            if stop - start < RUN_MIN:
                odd += plain[start:stop]
            else:
                insert_values(conn, odd, now, created_at, result)
                odd = []
                insert_run(conn, plain[start:stop], now, created_at, result)
            start = stop
        insert_values(conn, odd, now, created_at, result)

    def _live_generation(
        self, conn: sqlite3.Connection, spec: JobSpec, generation: int | None
    ) -> Sequence[Any] | None:
        """The QUEUED or RUNNING job of the subject that makes ``generation`` a duplicate."""
        if generation is None:
            return None  # "one above the newest" is never a duplicate
        row: Sequence[Any] | None = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_live_subject "
            "WHERE type = ? AND subject = ? AND state IN ('QUEUED', 'RUNNING') "
            "AND generation >= ? ORDER BY generation DESC, id DESC LIMIT 1",
            (spec.type, spec.subject, generation),
        ).fetchone()
        return row

    def _supersede_older(
        self,
        conn: sqlite3.Connection,
        spec: JobSpec,
        generation: int,
        job_id: int,
        now: float,
        result: EnqueueResult,
        added: dict[int, list[Job]],
    ) -> None:
        check_transition(JobState.QUEUED, JobState.SUPERSEDED)
        # The subject's live jobs below this generation, from the index of live jobs
        # alone: the finished generations before them are never looked at.
        older = conn.execute(
            "SELECT id, state FROM jobs INDEXED BY jobs_live_subject "
            "WHERE type = ? AND subject = ? AND state IN ('QUEUED', 'RUNNING') "
            "AND generation < ?",
            (spec.type, spec.subject, generation),
        ).fetchall()
        queued, running = queued_and_running(older)
        if queued:
            # `+state`: by id; with the state's index SQLite would walk every queued job.
            rows = conn.execute(
                "UPDATE jobs SET state = 'SUPERSEDED', superseded_by = ?, finished_at = ? "
                f"WHERE id IN {IDS_IN_JSON} AND +state = 'QUEUED' RETURNING id",
                (job_id, now, json_ids(queued)),
            ).fetchall()
            note_superseded(result, added, [old_id for (old_id,) in rows], job_id, now)
        if spec.supersede_running:
            result.running_older.extend((old_id, job_id) for old_id in running)
