"""Enqueue on SQLite: insert prepared jobs, with dedup and supersede by subject.

The cost per job grows neither with a subject's finished history (the
``jobs_live_subject`` index holds only its QUEUED and RUNNING jobs) nor with
the size of the batch. Jobs without a subject go in many rows a statement: a
run of jobs alike but for their payloads (most batches) as one ``INSERT ...
SELECT FROM json_each(?)`` of the payloads, whatever its length, and jobs
unlike their neighbours in ``VALUES`` chunks. Neither reads its ids back
(``RETURNING`` costs a third again of SQLite's own work per row): one writer
under ``AUTOINCREMENT`` gives one statement's rows consecutive ids in the order
it makes them, so the last id and the count name them all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from semantica.errors import BadInput, StoreError
from semantica.models import (
    GENERATION_MAX,
    Job,
    JobSpec,
    JobState,
    check_transition,
    start_time,
)
from semantica.supervisor.store.records import EnqueueResult, Prepared
from semantica.supervisor.store.rows import (
    JOB_COLUMNS,
    job_from_row,
    json_decode,
    new_job,
    note_superseded,
    queued_and_running,
)
from semantica.supervisor.store.sqlite.connection import SQLiteConnection
from semantica.supervisor.store.sqlite.rows import EDGES, IDS_IN_JSON, json_ids

_INSERT_COLUMNS = (
    "type, queue, subject, generation, priority, state, payload, max_attempts, timeout_s, "
    "backoff_s, require_charging, require_idle, created_at, run_after"
)
_INSERT_ROW = "(?, ?, ?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?)"
#: The most rows one INSERT carries: 13 parameters each, well under SQLite's 32,766.
_INSERT_CHUNK = 256
#: A run of jobs that share every column but the payload: those shared bound once, the
#: payloads one JSON array of texts, in order (json_each walks it in order). One
#: statement for any length: sqlite3 caches it once. Binding 13 parameters a row cost
#: more than SQLite's own insert of it.
_INSERT_RUN = (
    f"INSERT INTO jobs ({_INSERT_COLUMNS}) "
    "SELECT ?, ?, NULL, NULL, ?, 'QUEUED', value, ?, ?, ?, ?, ?, ?, ? FROM json_each(?)"
)
#: A run shorter than this goes with its neighbours in VALUES chunks instead: a
#: statement of its own would cost more than it spares.
_RUN_MIN = 8

_encode_json = msgspec.json.encode
_replace = msgspec.structs.replace


def _chunks(count: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` covering ``count`` rows, each size a power of two up to _INSERT_CHUNK.

    Each size is a distinct INSERT statement, prepared once and cached by
    sqlite3: a handful of sizes keeps that cache (and the supervisor's memory)
    small whatever batch sizes clients send; one statement per batch size
    grew the supervisor by 50 MB.
    """
    start = 0
    while start < count:
        size = min(_INSERT_CHUNK, 1 << ((count - start).bit_length() - 1))
        yield start, size
        start += size


def _insert_args(
    spec: JobSpec, generation: int | None, payload: str, now: float, run_after: float
) -> tuple[Any, ...]:
    """The parameters of one :data:`_INSERT_ROW`."""
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
        int(spec.require_charging),
        int(spec.require_idle),
        now,
        run_after,
    )


def _run_key(item: tuple[JobSpec, str, float]) -> tuple[Any, ...]:
    """What jobs of one :data:`_INSERT_RUN` share: every column but the payload."""
    spec, _, run_after = item
    return (
        spec.type,
        spec.queue,
        spec.priority,
        spec.max_attempts,
        spec.timeout,
        spec.backoff,
        spec.require_charging,
        spec.require_idle,
        run_after,
    )


def _ids(cursor: sqlite3.Cursor, count: int) -> range:
    """The ids of the ``count`` rows one INSERT just made, in the order it made them.

    The store is the database's one writer and ``jobs.id`` is ``AUTOINCREMENT``:
    each row of a statement takes one more than the largest id there ever was,
    that is the row before it, so they are consecutive and end at the last one.
    """
    last = cursor.lastrowid
    if cursor.rowcount != count or last is None:
        raise StoreError(f"inserted {cursor.rowcount} jobs of {count}")  # (never seen)
    return range(last - count + 1, last + 1)


class SQLiteEnqueue(SQLiteConnection):
    """Adding jobs: plain ones many rows a statement, those with a subject one by one
    under the generation rules (dedup, supersede), all in one transaction; those that
    wait for other jobs one by one, each after the jobs it waits for."""

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
            plain: list[tuple[JobSpec, str, float]] = []  # no subject: inserted together
            for spec, payload, run_after, edges in rows:
                if spec.subject is None and not edges:
                    plain.append((spec, payload, run_after))
                    continue
                # The generation rules (and the jobs waited for) see every spec before
                # this one: insert those first.
                self._insert_plain(conn, plain, now, created_at, result)
                plain = []
                if spec.subject is None:
                    (job_id,) = conn.execute(
                        f"INSERT INTO jobs ({_INSERT_COLUMNS}) VALUES {_INSERT_ROW} RETURNING id",
                        _insert_args(spec, None, payload, now, run_after),
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
                    f"INSERT INTO jobs ({_INSERT_COLUMNS}) VALUES {_INSERT_ROW} RETURNING id",
                    _insert_args(spec, generation, payload, now, run_after),
                ).fetchone()
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
        self._cascaded += cascaded
        return result

    def _insert_plain(
        self,
        conn: sqlite3.Connection,
        plain: list[tuple[JobSpec, str, float]],
        now: float,
        created_at: datetime,
        result: EnqueueResult,
    ) -> None:
        """Insert jobs without a subject, many rows a statement, in order (their ids too):
        runs of jobs alike but for the payload (:data:`_INSERT_RUN`), the rest in VALUES
        chunks."""
        odd: list[tuple[JobSpec, str, float]] = []  # jobs in short runs, waiting for a chunk
        start = 0
        while start < len(plain):
            key = _run_key(plain[start])
            stop = start + 1
            while stop < len(plain) and _run_key(plain[stop]) == key:
                stop += 1
            if stop - start < _RUN_MIN:
                odd += plain[start:stop]
            else:
                self._insert_values(conn, odd, now, created_at, result)
                odd = []
                self._insert_run(conn, plain[start:stop], now, created_at, result)
            start = stop
        self._insert_values(conn, odd, now, created_at, result)

    @staticmethod
    def _insert_run(
        conn: sqlite3.Connection,
        run: list[tuple[JobSpec, str, float]],
        now: float,
        created_at: datetime,
        result: EnqueueResult,
    ) -> None:
        """One statement for jobs that share every column but the payload."""
        spec, _, run_after = run[0]
        texts = [payload for _, payload, _ in run]
        payloads = _encode_json(texts).decode()
        cursor = conn.execute(
            _INSERT_RUN,
            (
                spec.type,
                spec.queue,
                spec.priority,
                spec.max_attempts,
                spec.timeout,
                spec.backoff,
                int(spec.require_charging),
                int(spec.require_idle),
                now,
                run_after,
                payloads,
            ),
        )
        # The jobs differ in their ids and payloads alone: copies of one (in C), with the
        # payloads decoded in one go, cost a sixth of a Job built field by field each.
        template = new_job(0, spec, None, "null", now, created_at, run_after)
        values = json_decode("[" + ",".join(texts) + "]")  # as stored (a set became a list)
        result.jobs += [
            _replace(template, id=job_id, payload=value)
            for job_id, value in zip(_ids(cursor, len(run)), values, strict=True)
        ]

    @staticmethod
    def _insert_values(
        conn: sqlite3.Connection,
        plain: list[tuple[JobSpec, str, float]],
        now: float,
        created_at: datetime,
        result: EnqueueResult,
    ) -> None:
        """Jobs without a subject, unlike one another, many rows a statement (a third of
        the cost per row of one each)."""
        for start, size in _chunks(len(plain)):
            chunk = plain[start : start + size]
            args: list[Any] = []
            for spec, payload, run_after in chunk:
                args += _insert_args(spec, None, payload, now, run_after)
            values = ", ".join([_INSERT_ROW] * len(chunk))
            cursor = conn.execute(f"INSERT INTO jobs ({_INSERT_COLUMNS}) VALUES {values}", args)
            for job_id, (spec, payload, run_after) in zip(
                _ids(cursor, len(chunk)), chunk, strict=True
            ):
                result.jobs.append(new_job(job_id, spec, None, payload, now, created_at, run_after))

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
