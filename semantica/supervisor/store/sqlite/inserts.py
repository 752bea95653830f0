"""Inserting new jobs on SQLite: many rows a statement, their ids without reading back.

What the enqueue (``enqueue.py``) and the set-based subject runs
(``subjects.py``) insert with. A run of jobs alike but for their payloads
(most batches) goes as one ``INSERT ... SELECT FROM json_each(?)`` of the
payloads, whatever its length; jobs unlike their neighbours in ``VALUES``
chunks. Neither reads its ids back (``RETURNING`` costs a third again of
SQLite's own work per row): one writer under ``AUTOINCREMENT`` gives one
statement's rows consecutive ids in the order it makes them, so the last id
and the count name them all (:func:`ids`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import msgspec

from semantica.errors import StoreError
from semantica.fresh_jobs import alike_key
from semantica.models import JobSpec
from semantica.supervisor.store.records import EnqueueResult
from semantica.supervisor.store.rows import json_decode, new_job

#: A job to insert: its spec, payload (JSON text) and start time.
Row = tuple[JobSpec, str, float]

INSERT_COLUMNS = (
    "type, queue, subject, generation, priority, state, payload, max_attempts, timeout_s, "
    "backoff_s, require_charging, require_idle, created_at, run_after"
)
INSERT_ROW = "(?, ?, ?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?)"
#: The most rows one INSERT carries: 13 parameters each, well under SQLite's 32,766.
INSERT_CHUNK = 256
#: A run of jobs that share every column but the payload: those shared bound once, the
#: payloads one JSON array of texts, in order (json_each walks it in order). One
#: statement for any length: sqlite3 caches it once. Binding 13 parameters a row cost
#: more than SQLite's own insert of it.
INSERT_RUN = (
    f"INSERT INTO jobs ({INSERT_COLUMNS}) "
    "SELECT ?, ?, NULL, NULL, ?, 'QUEUED', value, ?, ?, ?, ?, ?, ?, ? FROM json_each(?)"
)
#: A run shorter than this goes with its neighbours in VALUES chunks instead: a
#: statement of its own would cost more than it spares.
RUN_MIN = 8

_encode_json = msgspec.json.encode
_replace = msgspec.structs.replace


def chunks(count: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` covering ``count`` rows, each size a power of two up to INSERT_CHUNK.

    Each size is a distinct INSERT statement, prepared once and cached by
    sqlite3: a handful of sizes keeps that cache (and the supervisor's memory)
    small whatever batch sizes clients send; one statement per batch size
    grew the supervisor by 50 MB.
    """
    start = 0
    while start < count:
        size = min(INSERT_CHUNK, 1 << ((count - start).bit_length() - 1))
        yield start, size
        start += size


def insert_args(
    spec: JobSpec, generation: int | None, payload: str, now: float, run_after: float
) -> tuple[Any, ...]:
    """The parameters of one :data:`INSERT_ROW`."""
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


def run_key(item: Row) -> tuple[Any, ...]:
    """What jobs of one :data:`INSERT_RUN` share: every column but the payload."""
    spec, _, run_after = item
    return alike_key(spec, run_after)


def run_keys(rows: list[Row]) -> list[Any]:
    """:func:`run_key` of each row, in order: a row with the spec object and start time
    of the row before (a caller that repeats one spec) shares its key, made once."""
    keys: list[Any] = []
    last_spec: JobSpec | None = None
    last_after = 0.0
    key: Any = None
    for spec, _, run_after in rows:
        if spec is not last_spec or run_after != last_after:
            key = alike_key(spec, run_after)
            last_spec, last_after = spec, run_after
        keys.append(key)
    return keys


def ids(cursor: sqlite3.Cursor, count: int) -> range:
    """The ids of the ``count`` rows one INSERT just made, in the order it made them.

    The store is the database's one writer and ``jobs.id`` is ``AUTOINCREMENT``:
    each row of a statement takes one more than the largest id there ever was,
    that is the row before it, so they are consecutive and end at the last one.
    """
    last = cursor.lastrowid
    if cursor.rowcount != count or last is None:
        raise StoreError(f"inserted {cursor.rowcount} jobs of {count}")  # (never seen)
    return range(last - count + 1, last + 1)


def insert_run(
    conn: sqlite3.Connection,
    run: list[Row],
    now: float,
    created_at: datetime,
    result: EnqueueResult,
) -> None:
    """One statement for jobs that share every column but the payload."""
    spec, _, run_after = run[0]
    texts = [payload for _, payload, _ in run]
    payloads = _encode_json(texts).decode()
    cursor = conn.execute(
        INSERT_RUN,
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
        for job_id, value in zip(ids(cursor, len(run)), values, strict=True)
    ]


def insert_values(
    conn: sqlite3.Connection,
    plain: list[Row],
    now: float,
    created_at: datetime,
    result: EnqueueResult,
) -> None:
    """Jobs without a subject, unlike one another, many rows a statement (a third of
    the cost per row of one each)."""
    for start, size in chunks(len(plain)):
        chunk = plain[start : start + size]
        args: list[Any] = []
        for spec, payload, run_after in chunk:
            args += insert_args(spec, None, payload, now, run_after)
        values = ", ".join([INSERT_ROW] * len(chunk))
        cursor = conn.execute(f"INSERT INTO jobs ({INSERT_COLUMNS}) VALUES {values}", args)
        for job_id, (spec, payload, run_after) in zip(ids(cursor, len(chunk)), chunk, strict=True):
            result.jobs.append(new_job(job_id, spec, None, payload, now, created_at, run_after))
