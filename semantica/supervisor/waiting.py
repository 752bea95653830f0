"""Why a queued job is not running: the ``waiting_for`` of every QUEUED job.

The reasons are checked in the order the scheduler would trip over them, and
the first that applies is given; None means nothing holds the job back (it
starts as soon as a worker is free and no job ahead of it may start first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from semantica.models import Job, JobState, WaitReason
from semantica.supervisor.store import Blockers


def waiting_for(
    job: Job, blockers: Blockers, now: float, on_ac: bool, idle: bool
) -> WaitReason | None:
    """The first reason ``job`` cannot start now, or None."""
    if job.state != JobState.QUEUED:
        return None
    if job.run_after is not None and job.run_after.timestamp() > now:
        failed_before = job.error is not None and job.attempts > 0
        return WaitReason.RETRY_BACKOFF if failed_before else WaitReason.RUN_AFTER
    if job.queue in blockers.paused:
        return WaitReason.QUEUE_PAUSED
    limit = blockers.limits.get(job.queue, 0)
    if limit and blockers.running_per_queue.get(job.queue, 0) >= limit:
        return WaitReason.QUEUE_LIMIT
    if job.subject is not None and (job.type, job.subject) in blockers.busy_subjects:
        return WaitReason.SUBJECT_BUSY
    if job.require_charging and not on_ac:
        return WaitReason.CHARGING
    if job.require_idle and not idle:
        return WaitReason.IDLE
    return None


def explain(
    jobs: Iterable[Job],
    blockers: Blockers | Callable[[], Blockers],
    now: float,
    on_ac: bool,
    idle: bool,
) -> None:
    """Fill in ``waiting_for`` on each job.

    ``blockers`` may be a function: it is then called once, and only if some
    job is queued and due (the question costs a scan of the running jobs, which
    an enqueue's reply should not pay for a delayed job, nor a wait's for a
    finished one).
    """
    known = blockers if isinstance(blockers, Blockers) else None
    for job in jobs:
        job.waiting_for = None
        if job.state != JobState.QUEUED:
            continue
        if known is None and not (job.run_after is not None and job.run_after.timestamp() > now):
            assert callable(blockers)
            known = blockers()
        reason = waiting_for(job, known or Blockers(), now, on_ac, idle)
        job.waiting_for = None if reason is None else reason.value
