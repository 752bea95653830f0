"""Rows of the jobs table and the Jobs they are: columns, decoding, pages; any backend.

What every backend reads jobs with (the columns are plain SQL, the same in
SQLite and PostgreSQL). A Job is read with
:data:`JOB_COLUMNS` and decoded by :func:`job_from_row`; the long texts a job
may hold (an error, a progress message) are read in part and cut with a note,
so an old row stored before the caps cannot make a reply huge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from semantica.errors import BadInput, NoSuchJob
from semantica.fresh_jobs import fresh_job
from semantica.limits import ERROR_MESSAGE_MAX, PROGRESS_MESSAGE_MAX, cut
from semantica.models import (
    TERMINAL_STATES,
    TRANSITIONS,
    Job,
    JobError,
    JobSpec,
    JobState,
)
from semantica.supervisor.store.records import EnqueueResult, Page

ALL_STATES_SQL = "(" + ", ".join(f"'{state.value}'" for state in JobState) + ")"


def check_id(job_id: int) -> None:
    """Job ids are 64-bit integers: one outside 1..2**63-1 names no job."""
    if not 0 < job_id < 2**63:
        raise NoSuchJob(f"no job {job_id}")


def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


#: The jobs a queued job still waits for, as text (``3,4``), or NULL: SQLite's expression
#: (a backend without group_concat gives its own to :func:`columns`). The job's count of
#: unmet dependencies is read first, so a job that waits for none costs no lookup.
WAITING_ON = (
    "CASE WHEN deps_unmet > 0 THEN (SELECT group_concat(after_id) FROM job_deps "
    "WHERE job_deps.job_id = id AND status = 'waiting') END"
)


# The messages are read in part: a row stored before the caps (a 24 MB error,
# say) is cut on the way out (see job_from_row), and only its beginning is copied.
def columns(
    error_chars: int,
    progress_chars: int,
    *,
    bodies: bool = True,
    node: str = "NULL",
    waits: str = WAITING_ON,
) -> str:
    """The columns a Job is read from (see :func:`job_from_row`), in its order.

    The texts a job may make long are read at most ``error_chars`` and
    ``progress_chars`` + 1 characters (the + 1 shows they were longer);
    without ``bodies``, no payload nor result (rows for a view). ``node``: the
    expression of the name of the node running the job (a backend with nodes);
    ``waits``: of the ids it still waits for, as comma-separated text (see
    :data:`WAITING_ON`).
    """
    return ", ".join(
        [
            "id, type, queue, subject, generation, priority, state, attempts, max_attempts",
            "created_at, started_at, finished_at, run_after",
            "result" if bodies else "NULL",
            "error_kind",
            f"substr(error_message,1,{error_chars + 1})",
            "payload" if bodies else "'null'",
            "timeout_s, worker_pid, backoff_s, require_charging, require_idle, superseded_by",
            "progress",
            f"substr(progress_message,1,{progress_chars + 1})",
            node,
            "schedule, slot",
            waits,
        ]
    )


JOB_COLUMNS = columns(ERROR_MESSAGE_MAX, PROGRESS_MESSAGE_MAX)
PRIORITY = JOB_COLUMNS.split(", ").index("priority")


def row_columns(cut: int, node: str = "NULL", waits: str = WAITING_ON) -> str:
    """:data:`JOB_COLUMNS` for a row of a view (top): no payload nor result, and the
    texts a job may make long read at most ``cut + 1`` characters (see :func:`cut_row`)."""
    return columns(cut, cut, bodies=False, node=node, waits=waits)


def _cut(text: str, cut: int) -> str:
    return text if len(text) <= cut else text[: cut - 1] + "\u2026"


def cut_row(job: Job, cut: int) -> Job:
    """Texts longer than ``cut`` characters end in an ellipsis at ``cut``."""
    if job.error is not None and len(job.error.message) > cut:
        job.error = JobError(job.error.kind, _cut(job.error.message, cut))
    if job.progress_message is not None:
        job.progress_message = _cut(job.progress_message, cut)
    return job


json_decode = msgspec.json.decode
_msgpack_encode = msgspec.msgpack.Encoder().encode

#: What a job's reply may add to its encoded size after the read (``waiting_for``).
_JOB_SLACK = 32
# Where a row's JSON texts are, for a first guess at its size.
_PAYLOAD, _RESULT = (JOB_COLUMNS.split(", ").index(name) for name in ("payload", "result"))


class PageBuilder:
    """Jobs from rows, as long as they fit in ``budget`` bytes of reply (at least one).

    Each job is measured as it is sent (msgpack); a row whose JSON alone
    shows it cannot fit (msgpack takes at least a sixth of the JSON: ``\u0001``
    becomes one byte) is not even decoded, so a page of large jobs costs its
    jobs and one look at the next row.
    """

    def __init__(self, budget: int | None) -> None:
        self.jobs: list[Job] = []
        self.more = False
        self._left = math.inf if budget is None else budget

    def add(self, row: Sequence[Any]) -> bool:
        """Take the job of ``row`` if it fits; False (and ``more``) once the page is full."""
        if self.jobs and (len(row[_PAYLOAD]) + len(row[_RESULT] or "")) / 6 > self._left:
            self.more = True
            return False
        job = job_from_row(row)
        if self._left != math.inf:
            self._left -= len(_msgpack_encode(job)) + _JOB_SLACK
            if self.jobs and self._left < 0:
                self.more = True
                return False
        self.jobs.append(job)
        return True

    def page(self) -> Page:
        return Page(self.jobs, self.more)


#: A state as stored (its value) -> the JobState: a dict lookup, where ``JobState(text)``
#: runs the enum's Python-level constructor (0.6 µs, paid per row of a long read).
STATE_OF: dict[str, JobState] = {state.value: state for state in JobState}


def job_from_row(row: Sequence[Any]) -> Job:
    """The Job of a row read with :data:`JOB_COLUMNS` (or :func:`row_columns`)."""
    (
        job_id,
        type_,
        queue,
        subject,
        generation,
        priority,
        state,
        attempts,
        max_attempts,
        created_at,
        started_at,
        finished_at,
        run_after,
        result,
        error_kind,
        error_message,
        payload,
        timeout,
        worker_pid,
        backoff,
        require_charging,
        require_idle,
        superseded_by,
        progress,
        progress_message,
        node,
        schedule,
        slot,
        waits,
    ) = row
    state = STATE_OF[state]
    return Job(
        id=job_id,
        type=type_,
        queue=queue,
        subject=subject,
        generation=generation,
        priority=priority,
        state=state,
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=ts(created_at),  # type: ignore[arg-type]
        started_at=ts(started_at),
        finished_at=ts(finished_at) if state in TERMINAL_STATES else None,
        run_after=ts(run_after),
        result=None if result is None else json_decode(result),
        error=None
        if error_kind is None
        else JobError(error_kind, _read_cut(error_message or "", ERROR_MESSAGE_MAX, "error")),
        payload=json_decode(payload),
        timeout=timeout,
        worker_pid=worker_pid if state == JobState.RUNNING else None,
        node=node if state == JobState.RUNNING else None,
        backoff=backoff,
        require_charging=bool(require_charging),
        require_idle=bool(require_idle),
        superseded_by=superseded_by,
        progress=progress,
        progress_message=None
        if progress_message is None
        else _read_cut(progress_message, PROGRESS_MESSAGE_MAX, "progress"),
        schedule=schedule,
        slot=ts(slot),
        waiting_on=sorted(map(int, waits.split(",")))
        if waits and state == JobState.QUEUED
        else None,
    )


def check_retryable(job_id: int, state: JobState) -> None:
    """Only the transition table's "retry" moves (FAILED or CANCELLED -> QUEUED) are a
    retry: RUNNING -> QUEUED is a requeue.

    Raises:
        BadInput: the job cannot be retried.
    """
    if TRANSITIONS.get((state, JobState.QUEUED)) != "retry":
        raise BadInput(f"job {job_id} is {state}; only FAILED or CANCELLED jobs can be retried")


def check_newest(job_id: int, subject: str, generation: int, newer: Sequence[Any] | None) -> None:
    """A job with a subject is not retried once a newer generation of its ``(type,
    subject)`` is queued, running or DONE (``newer``: its id, generation and state, as a
    backend found it): the newer one wins, as with an enqueue of an older generation.

    Raises:
        BadInput: there is such a newer job.
    """
    if newer is not None:
        raise BadInput(
            f"job {job_id} is generation {generation} of subject {subject!r}; "
            f"job {newer[0]} is generation {newer[1]} and {newer[2]}: retry or "
            "enqueue the newest instead"
        )


def note_superseded(
    result: EnqueueResult,
    added: dict[int, list[Job]],
    superseded: Sequence[int],
    by: int,
    now: float,
) -> None:
    """Record the QUEUED jobs ``superseded`` by job ``by`` in an enqueue's result, and in
    the jobs an earlier spec of the same batch added (``added``, by id)."""
    for old_id in superseded:
        result.superseded.append(old_id)
        for job in added.pop(old_id, ()):
            job.state, job.superseded_by = JobState.SUPERSEDED, by
            job.finished_at = ts(now)


def queued_and_running(older: Sequence[Sequence[Any]]) -> tuple[list[int], list[int]]:
    """The ids of the (id, state) rows ``older`` that are QUEUED, and those RUNNING."""
    queued = [old_id for old_id, state in older if state == JobState.QUEUED.value]
    running = [old_id for old_id, state in older if state == JobState.RUNNING.value]
    return queued, running


def new_job(
    job_id: int,
    spec: JobSpec,
    generation: int | None,
    payload: str,
    now: float,
    created_at: datetime,
    run_after: float,
) -> Job:
    """The Job a fresh insert made, without reading it back (``created_at`` is ``now``;
    ``payload`` its JSON text, as stored: a set became a list)."""
    return fresh_job(job_id, spec, generation, json_decode(payload), now, created_at, run_after)


def filters(mark: str = "?", **columns: str | None) -> tuple[str, list[Any]]:
    """A WHERE clause matching every column given a value (``column = value``), with
    ``mark`` the backend's parameter placeholder."""
    where, args = [], []
    for column, value in columns.items():
        if value is not None:
            where.append(f"{column} = {mark}")
            args.append(value)
    return ("WHERE " + " AND ".join(where)) if where else "", args


def _read_cut(text: str, cap: int, what: str) -> str:
    """A message as read (its first ``cap + 1`` characters), cut to ``cap`` bytes."""
    # Only a text of more than `cap` characters may have been read in part.
    return cut(text, cap, f"{what} message", whole=len(text) <= cap)


FINISHED_STATES_SQL = "('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')"
