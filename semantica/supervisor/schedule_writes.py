"""Changes to schedules asked for by clients, and what follows each: the store write, the
log line, the wake-up of the schedule timer.

:class:`ScheduleWrites` is to schedules what :class:`~.lifecycle.JobLifecycle`
is to jobs: every change a request makes to a schedule (put, remove, pause,
resume, apply, run now) comes through here, so each is committed first, then
logged once, then announced to the timer (``changed``: the next slot due may
be another now). A job made now by ``run`` is a job like an enqueued one: the
lifecycle announces it (:meth:`JobLifecycle.enqueued`), so it is counted,
logged and wakes the workers the same way.

The slots themselves are fired by the schedule timer, through the lifecycle,
not here. Each method raises what the store raises (BadInput, NoSuchSchedule,
StoreBusy, StoreError) and then has changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from semantica.models import Job
from semantica.schedules import Schedule, ScheduleChanges, ScheduleSpec
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.store import JobStore

log = structlog.get_logger("semantica.schedules")


class ScheduleWrites:
    """Every change to a schedule a request makes.

    Args:
        store: the job store (its schedule methods).
        jobs: the lifecycle, which announces a job made by :meth:`run`.
        changed: called after each change (the schedule timer's ``changed``).
    """

    def __init__(
        self, store: JobStore, jobs: JobLifecycle, changed: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.changed = changed

    def put(self, spec: ScheduleSpec) -> tuple[Schedule, bool]:
        """Create the schedule (True) or replace the one of that name (False); the spec was
        checked (``validate_schedule``) and its job type is one the workers know."""
        self.jobs.check([spec.job])
        schedule, created = self.store.put_schedule(spec)
        log.info(
            "schedule created" if created else "schedule changed",
            schedule=spec.name,
            next_fire=schedule.next_fire,
            paused=schedule.paused,
        )
        self.changed()
        return schedule, created

    def remove(self, name: str) -> bool:
        """Delete the schedule (its jobs stay); False if there was none."""
        if not self.store.remove_schedule(name):
            return False
        log.info("schedule removed", schedule=name)
        self.changed()
        return True

    def pause(self, name: str, paused: bool) -> Schedule:
        """Pause or resume it (NoSuchSchedule)."""
        schedule = self.store.pause_schedule(name, paused)
        log.info(
            "schedule paused" if paused else "schedule resumed",
            schedule=name,
            next_fire=schedule.next_fire,
        )
        self.changed()
        return schedule

    def apply(self, specs: Sequence[ScheduleSpec], dry_run: bool) -> ScheduleChanges:
        """Make the schedules exactly ``specs`` in one write (``dry_run``: say what would
        change); every job type must be one the workers know."""
        self.jobs.check([spec.job for spec in specs])
        changes = self.store.apply_schedules(specs, dry_run)
        if not dry_run and (changes.created or changes.updated or changes.removed):
            log.info(
                "schedules applied",
                created=changes.created,
                updated=changes.updated,
                removed=changes.removed,
            )
            self.changed()
        return changes

    def run(self, name: str) -> Job:
        """A job from the schedule's template now (NoSuchSchedule); announced as an
        enqueued job is."""
        result = self.jobs.enqueued(self.store.run_schedule(name))
        job = result.jobs[0]
        log.info("schedule run by hand", schedule=name, job_id=job.id)
        return job
