"""Jobs with a subject on SQLite, a run of them at once: the generation rules set-based.

The commonest batch with subjects (one job per file, say) gives each job a
subject of its own and no generation: "one above the newest known". One by
one, each job cost four statements (the newest generation, the insert, the
older live jobs, their supersede). A run of such jobs costs four in all:

* the newest generation of every ``(type, subject)`` of the run, in one read;
* the inserts, in ``VALUES`` chunks (``inserts.py``);
* the older QUEUED and RUNNING jobs of all those subjects, in one read of the
  index of live jobs (``jobs_live_subject``: finished generations are never
  looked at);
* the QUEUED ones SUPERSEDED, each by its subject's new job, in one update.

The rules and their results are those of one job at a time (contract.py,
:meth:`JobStore.insert`), because a run holds each ``(type, subject)`` at most
once and only jobs that wait for nothing and name no generation (which is
never a duplicate): no job of a run can see another's. The caller cuts runs
so; everything else goes one by one.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import msgspec

from semantica.errors import BadInput
from semantica.models import GENERATION_MAX, Job, JobState, check_transition
from semantica.supervisor.store.records import EnqueueResult
from semantica.supervisor.store.rows import new_job, note_superseded
from semantica.supervisor.store.sqlite.inserts import (
    INSERT_COLUMNS,
    INSERT_ROW,
    Row,
    chunks,
    ids,
    insert_args,
)


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


#: The newest generation of each ``[type, subject]`` of a JSON array, in its order
#: (``jobs_subject`` holds every generation of a subject: one seek each).
_NEWEST = (
    "SELECT (SELECT max(generation) FROM jobs WHERE subject = value ->> 1 "
    "AND type = value ->> 0) FROM json_each(?) ORDER BY key"
)
#: The QUEUED and RUNNING jobs of each ``[type, subject, generation]`` below that
#: generation: (place in the array, id, state).
_OLDER = (
    "SELECT v.key, j.id, j.state FROM json_each(?) AS v "
    "JOIN jobs AS j INDEXED BY jobs_live_subject "
    "ON j.type = v.value ->> 0 AND j.subject = v.value ->> 1 "
    "WHERE j.state IN ('QUEUED', 'RUNNING') AND j.generation < v.value ->> 2"
)
#: Each QUEUED job of a JSON object ``{old id: new id}`` SUPERSEDED by its new job.
#: (`+state`: by id; with the state's index SQLite would walk every queued job.)
_SUPERSEDE = (
    "UPDATE jobs SET state = 'SUPERSEDED', superseded_by = v.new, finished_at = ? "
    "FROM (SELECT CAST(key AS INTEGER) AS id, value AS new FROM json_each(?)) AS v "
    "WHERE jobs.id = v.id AND +jobs.state = 'QUEUED' RETURNING jobs.id, jobs.superseded_by"
)


def insert_subject_run(
    conn: sqlite3.Connection,
    run: list[Row],
    now: float,
    created_at: datetime,
    result: EnqueueResult,
    added: dict[int, list[Job]],
) -> None:
    """Insert ``run`` (jobs with distinct subjects, no generation, waiting for nothing)
    under the generation rules, as one by one would: each one above its subject's
    newest, the QUEUED older ones SUPERSEDED by it (and those of ``added``, the jobs
    of the batch so far, marked so), the RUNNING ones in ``running_older`` if its
    spec asks.

    Raises:
        BadInput: a subject has no generation left (nothing of the run was written).
    """
    if not run:
        return
    pairs = _json([[spec.type, spec.subject] for spec, _, _ in run])
    generations = []
    for (spec, _, _), (newest,) in zip(run, conn.execute(_NEWEST, (pairs,)), strict=True):
        if newest is not None and newest >= GENERATION_MAX:
            raise BadInput(
                f"subject {spec.subject!r} is at generation {newest}, the "
                "largest there may be: no newer one can follow"
            )
        generations.append((newest or 0) + 1)
    # Older jobs first: the new ones are not there yet, and the older ones are what
    # a read after each insert would find (the run's subjects are all distinct).
    older = conn.execute(
        _OLDER,
        (
            _json(
                [
                    [spec.type, spec.subject, g]
                    for (spec, _, _), g in zip(run, generations, strict=True)
                ]
            ),
        ),
    ).fetchall()
    older.sort()  # in the order of the run, as one by one
    new_ids: list[int] = []
    for start, size in chunks(len(run)):
        args: list[Any] = []
        for (spec, payload, run_after), generation in zip(
            run[start : start + size], generations[start : start + size], strict=True
        ):
            args += insert_args(spec, generation, payload, now, run_after)
        values = ", ".join([INSERT_ROW] * size)
        cursor = conn.execute(f"INSERT INTO jobs ({INSERT_COLUMNS}) VALUES {values}", args)
        new_ids += ids(cursor, size)
    superseding: dict[int, int] = {}  # QUEUED older job -> the new job of its subject
    for place, old_id, state in older:
        new_id = new_ids[place]
        if state == JobState.QUEUED.value:
            superseding[old_id] = new_id
        elif run[place][0].supersede_running:
            result.running_older.append((old_id, new_id))
    if superseding:
        check_transition(JobState.QUEUED, JobState.SUPERSEDED)
        rows = conn.execute(_SUPERSEDE, (now, _json(superseding))).fetchall()
        for old_id, new_id in sorted(rows, key=lambda row: (row[1], row[0])):
            note_superseded(result, added, [old_id], new_id, now)
    for job_id, (spec, payload, run_after), generation in zip(
        new_ids, run, generations, strict=True
    ):
        job = new_job(job_id, spec, generation, payload, now, created_at, run_after)
        added[job_id] = [job]
        result.jobs.append(job)
