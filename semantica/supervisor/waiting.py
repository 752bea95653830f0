"""Why a queued job is not running: the ``waiting_for`` of every QUEUED job.

The rules are those of the store's lease, from the one place that states them
(:mod:`semantica.supervisor.store.start_rules`); this module only asks them
about jobs. None means nothing holds the job back (it starts as soon as a
worker is free and no job ahead of it may start first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from semantica.models import Job, JobState, WaitReason
from semantica.supervisor.store import Blockers, waiting_reason


def waiting_for(
    job: Job, blockers: Blockers, now: float, on_ac: bool, idle: bool
) -> WaitReason | None:
    """The first reason ``job`` cannot start now, or None."""
    if job.state != JobState.QUEUED:
        return None
    return waiting_reason(
        queue=job.queue,
        type=job.type,
        subject=job.subject,
        run_after=None if job.run_after is None else job.run_after.timestamp(),
        failed_before=job.error is not None and job.attempts > 0,
        require_charging=job.require_charging,
        require_idle=job.require_idle,
        blockers=blockers,
        now=now,
        on_ac=on_ac,
        idle=idle,
        unmet=len(job.waiting_on or ()),
    )


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
    # The reason of a job without a subject, an error or dependencies depends on these
    # alone: the jobs of a big enqueue ask the rules once for each kind among them.
    alike: dict[tuple[Any, ...], str | None] = {}
    queued = JobState.QUEUED  # (looked up once: an enum's attribute costs a lookup each)
    for job in jobs:
        job.waiting_for = None
        if job.state != queued:
            continue
        if job.waiting_on:
            job.waiting_for = WaitReason.DEPENDENCY.value  # (the first rule: no facts needed)
            continue
        key = None
        if job.subject is None and job.error is None:
            key = (job.queue, job.run_after, job.require_charging, job.require_idle)
            if key in alike:
                job.waiting_for = alike[key]
                continue
        if known is None and not (job.run_after is not None and job.run_after.timestamp() > now):
            assert callable(blockers)
            known = blockers()
        reason = waiting_for(job, known or Blockers(), now, on_ac, idle)
        job.waiting_for = None if reason is None else reason.value
        if key is not None:
            alike[key] = job.waiting_for
