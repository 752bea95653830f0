"""A job as an enqueue has just added it: stated once, for the stores and the clients.

A store returns the jobs it inserted without reading them back; a client
rebuilds, from the specs it sent and a brief enqueue reply (``Enqueued.ids``),
the jobs the supervisor did not send whole. Both build them here, so that a
rebuilt job is the one the store made, field for field. Nothing here fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from semantica.models import Job, JobSpec, JobState


def start_time(spec: JobSpec, now: float) -> float:
    """When a job added at ``now`` may start first: its ``at``, else ``now`` + its ``delay``."""
    return spec.at.timestamp() if spec.at is not None else now + (spec.delay or 0.0)


def alike_key(spec: JobSpec, run_after: float) -> tuple[Any, ...]:
    """What jobs added together share when they differ only in their payloads (and ids).

    The store inserts a run of such jobs in one statement and builds their jobs as
    copies of one; a client rebuilding them from a brief reply copies them the same way.
    """
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


def fresh_job(
    job_id: int,
    spec: JobSpec,
    generation: int | None,
    payload: Any,
    now: float,
    created_at: datetime,
    run_after: float,
) -> Job:
    """The Job an enqueue of ``spec`` has just added at ``now`` (``created_at``, as a
    time), QUEUED and never run: what a store returns without reading it back, and what
    a client rebuilds from the spec it sent and a brief reply (``Enqueued.ids``).
    ``payload`` is as stored: the spec's, through JSON."""
    return Job(
        id=job_id,
        type=spec.type,
        queue=spec.queue,
        subject=spec.subject,
        generation=generation,
        priority=spec.priority,
        state=JobState.QUEUED,
        attempts=0,
        max_attempts=spec.max_attempts,
        created_at=created_at,
        started_at=None,
        finished_at=None,
        # Most jobs may run at once: share the one time of the batch.
        run_after=created_at if run_after == now else datetime.fromtimestamp(run_after, UTC),
        payload=payload,
        timeout=spec.timeout,
        backoff=spec.backoff,
        require_charging=spec.require_charging,
        require_idle=spec.require_idle,
    )
