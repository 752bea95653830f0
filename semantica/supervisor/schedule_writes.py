"""The writes of schedules, and what follows each: part of the job lifecycle.

Like every write of the supervisor, a change to a schedule goes through
:class:`~semantica.supervisor.lifecycle.JobLifecycle` (of which this is a
part): the store write first, then the log event, then the wake-ups. A
schedule put, removed, paused or resumed wakes the schedule timer
(``on_schedules``, :meth:`ScheduleTimer.changed
<semantica.supervisor.schedule_timer.ScheduleTimer.changed>`), so that it
looks again at when the next slot is due; jobs made by a schedule, fired or
run by hand, are settled as enqueued ones (counted, announced, logged, and
the workers woken).

Errors are the store's (``StoreError``, ``NoSuchSchedule``, ``BadInput``),
raised before anything is logged or woken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from semantica.schedules import Schedule, ScheduleChanges, ScheduleSpec
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.store import EnqueueResult, Fired, JobStore

log = structlog.get_logger("semantica.schedules")


class ScheduleWrites:
    """The schedule writes of the job lifecycle (mixed into JobLifecycle)."""

    store: JobStore
    metrics: Metrics | None
    #: Called after a schedule was put, removed, paused or resumed (the timer looks
    #: again): set by whoever builds the timer.
    schedules_changed: Callable[[], None] | None = None

    if TYPE_CHECKING:

        def settle_added(self, result: EnqueueResult) -> EnqueueResult: ...

    def on_schedules(self) -> None:
        if self.schedules_changed is not None:
            self.schedules_changed()

    def put_schedule(self, spec: ScheduleSpec, replace: bool = True) -> tuple[Schedule, bool]:
        """Create or replace a schedule (checked before: ``validate_schedule``); one that
        exists is BadInput unless ``replace``."""
        schedule, created = self.store.put_schedule(spec, replace)
        log.info(
            "schedule created" if created else "schedule updated",
            schedule=spec.name,
            next_slot=None if schedule.next_slot is None else schedule.next_slot.isoformat(),
        )
        self.on_schedules()
        return schedule, created

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule and its runs; False if there was none."""
        gone = self.store.remove_schedule(name)
        if gone:
            log.info("schedule removed", schedule=name)
            self.on_schedules()
        return gone

    def pause_schedule(self, name: str, paused: bool) -> Schedule:
        """Pause or resume a schedule (NoSuchSchedule)."""
        schedule = self.store.pause_schedule(name, paused)
        log.info("schedule paused" if paused else "schedule resumed", schedule=name)
        self.on_schedules()
        return schedule

    def apply_schedules(self, specs: Sequence[ScheduleSpec], dry_run: bool) -> ScheduleChanges:
        """Make the set of schedules exactly ``specs`` (or say what that would change)."""
        changes = self.store.apply_schedules(specs, dry_run)
        if not dry_run and (changes.created or changes.updated or changes.removed):
            log.info(
                "schedules applied",
                created=changes.created,
                updated=changes.updated,
                removed=changes.removed,
            )
            self.on_schedules()
        return changes

    def run_schedule(self, name: str) -> EnqueueResult:
        """A job now from a schedule's template (``schedule run``; NoSuchSchedule)."""
        result = self.settle_added(self.store.run_schedule(name))
        for job in result.jobs:
            log.info("schedule run by hand", schedule=name, job_id=job.id)
        return result

    def fire_schedules(self) -> Fired:
        """Decide every slot due now, and settle the jobs they made as enqueued ones."""
        fired = self.store.fire_due()
        if fired.result.jobs or fired.result.superseded:
            self.settle_added(fired.result)
        for job in fired.result.jobs:
            log.info(
                "schedule fired",
                schedule=job.schedule,
                slot=None if job.slot is None else job.slot.isoformat(),
                job_id=job.id,
                deduplicated=job.deduplicated or None,
            )
        for name, why in fired.refused:
            log.error("schedule slot refused: its job cannot be made", schedule=name, error=why)
        if fired.skipped or fired.missed:
            log.info("schedule slots not fired", skipped=fired.skipped, missed=fired.missed)
        if self.metrics is not None:
            self.metrics.schedule_slots(fired.fired, fired.skipped, fired.missed)
        return fired
