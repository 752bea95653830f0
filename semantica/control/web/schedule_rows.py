"""Schedules as the web view shows them: plain rows of text made from a ``Schedule``.

Contract:

* :func:`schedule_row` says everything the schedules page, a schedule's own page
  and the dashboard show of one schedule, in words, with the same rules as
  ``semctl schedule`` (:mod:`semantica.control.schedule_render`): a slot is a time
  in the schedule's own zone (``2026-12-07 03:00 CET``); "when" reads ``cron 0 3 *
  * * Europe/Berlin`` or ``every 15m``.
* What a schedule holds that a user typed (its name, its job's type, queue,
  subject, payload) stays as data: the templates escape it (``|text``); an exec
  job's environment is shown as a count, as in the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from semantica.control.render import payload_for_screen
from semantica.control.schedule_input import format_duration
from semantica.control.schedule_render import at, when
from semantica.schedules import Schedule, ScheduleRun


@dataclass(frozen=True)
class RunRow:
    """One decided slot of a schedule."""

    slot: str
    outcome: str  # fired, skipped, manual, refused
    decided: str
    job_id: int | None
    state: str | None  # the job's state now; None: no job, or it is gone


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    when: str
    zone: str
    paused: bool
    next_fire: datetime | None
    next_text: str  # in the schedule's zone, or "paused"
    job_type: str
    job_queue: str
    last: RunRow | None  # the latest run, if the reply carries runs
    last_job_id: int | None
    fired: int
    skipped: int
    missed: int
    details: list[tuple[str, str]] = field(default_factory=list)  # label, value
    runs: list[RunRow] = field(default_factory=list)
    payload: object = None


def run_row(run: ScheduleRun, zone: str) -> RunRow:
    return RunRow(
        slot=at(run.slot, zone),
        outcome=run.outcome,
        decided=at(run.at, zone),
        job_id=run.job_id,
        state=None if run.state is None else run.state.value,
    )


def _details(schedule: Schedule) -> list[tuple[str, str]]:
    """The settings a schedule's own page lists, as (label, value) lines."""
    job = schedule.job
    lines = [
        ("time zone", schedule.tz),
        ("catch-up", schedule.catch_up),
        ("overlap", schedule.overlap),
        ("next slot", at(schedule.next_slot, schedule.tz)),
    ]
    if schedule.next_fire != schedule.next_slot:
        lines.append(("next job due", at(schedule.next_fire, schedule.tz)))
    lines += [
        ("slots", f"{schedule.fired} fired, {schedule.skipped} skipped, {schedule.missed} missed"),
        ("created", at(schedule.created_at, schedule.tz)),
        ("changed", at(schedule.updated_at, schedule.tz)),
        ("job", f"{job.type} · queue {job.queue} · priority {job.priority}"),
    ]
    options = [f"max attempts {job.max_attempts}"]
    if job.timeout is not None:
        options.append(f"timeout {format_duration(job.timeout)}")
    if job.backoff is not None:
        options.append(f"backoff {format_duration(job.backoff)}")
    options += ["charging"] if job.require_charging else []
    options += ["idle CPU"] if job.require_idle else []
    lines.append(("options", ", ".join(options)))
    if job.subject is not None:
        lines.append(("subject", job.subject))
    return lines


def schedule_row(schedule: Schedule, details: bool = False) -> ScheduleRow:
    """What the view shows of ``schedule``; ``details``: its settings, runs and payload too."""
    runs = [run_row(run, schedule.tz) for run in schedule.runs]
    return ScheduleRow(
        name=schedule.name,
        when=when(schedule),
        zone=schedule.tz,
        paused=schedule.paused,
        next_fire=None if schedule.paused else schedule.next_fire,
        next_text="paused" if schedule.paused else at(schedule.next_fire, schedule.tz),
        job_type=schedule.job.type,
        job_queue=schedule.job.queue,
        last=runs[0] if runs else None,
        last_job_id=schedule.last_job_id,
        fired=schedule.fired,
        skipped=schedule.skipped,
        missed=schedule.missed,
        details=_details(schedule) if details else [],
        runs=runs if details else [],
        payload=payload_for_screen(
            schedule.job.type, schedule.job.payload, f"semctl schedule show {schedule.name} --json"
        )
        if details
        else None,
    )
