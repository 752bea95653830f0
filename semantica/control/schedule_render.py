"""How ``semctl schedule`` draws schedules for people. Never used for ``--json``.

``list`` and ``show`` are described as blocks (plain.py), drawn directly when simple
and by rich otherwise, as ``semctl list`` and ``show`` are: this module imports no
rich (``semctl schedule`` runs on the fast path, fast_path.py).

Times are shown in the schedule's own zone, with the zone's abbreviation
(``2026-12-07 03:00 CET``): a slot is a time in that zone (zoneinfo is imported
on first use, ~3 ms). As in every view, whatever a schedule holds goes through
:mod:`semantica.control.terminal` (escaped, never markup), and an exec job's
environment is shown as a count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from functools import cache

from semantica.control.plain import Block, Line, Span, Table, show
from semantica.control.render import payload_for_screen, span, state_span
from semantica.control.schedule_input import format_duration
from semantica.models import JobSpec
from semantica.schedules import Schedule, ScheduleChanges, ScheduleRun, ScheduleSpec


@cache
def _zone(name: str) -> tzinfo | None:
    from zoneinfo import ZoneInfo  # (not on semctl's fast path)

    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # (ZoneInfoNotFoundError is a KeyError)
        return None


def at(value: datetime | None, zone: str | None = None) -> str:
    """``2026-12-07 03:00 CET`` (seconds only when there are some); ``zone`` None: local."""
    if value is None:
        return "-"
    shown = value.astimezone(_zone(zone) if zone else None)
    layout = "%Y-%m-%d %H:%M" if shown.second == 0 else "%Y-%m-%d %H:%M:%S"
    return shown.strftime(f"{layout} %Z").rstrip()


def when(spec: ScheduleSpec) -> str:
    """``cron 0 3 * * * Europe/Berlin`` or ``every 15m``, with the jitter if any."""
    text = f"cron {spec.cron} {spec.tz}" if spec.cron is not None else ""
    if spec.every is not None:
        text = f"every {format_duration(spec.every)}"
    if spec.jitter:
        text += f" ~{format_duration(spec.jitter)}"
    return text


def run_text(run: ScheduleRun) -> str:
    """``fired: job 12 DONE``, ``skipped``, ``manual: job 13 RUNNING``, ``fired: job 9 gone``."""
    if run.job_id is None:
        return run.outcome
    state = "gone" if run.state is None else run.state.value
    return f"{run.outcome}: job {run.job_id} {state}"


def last_text(schedule: Schedule) -> str:
    """The latest run, with its slot: what ``list`` and ``top`` show."""
    if not schedule.runs:
        return "-" if schedule.last_job_id is None else f"job {schedule.last_job_id}"
    run = schedule.runs[0]
    return f"{at(run.slot, schedule.tz)} {run_text(run)}"


def next_text(schedule: Schedule) -> str:
    return "paused" if schedule.paused else at(schedule.next_fire, schedule.tz)


def schedule_table(schedules: list[Schedule]) -> None:
    show(schedule_table_blocks(schedules))


def schedule_table_blocks(schedules: list[Schedule]) -> list[Block]:
    if not schedules:
        return [[("no schedules", "")]]
    columns = ("NAME", "WHEN", "NEXT", "LAST", "PAUSED")
    rows = [
        [
            [span(schedule.name)],
            [span(when(schedule))],
            [(next_text(schedule), "")],
            [span(last_text(schedule))],  # keeps to one line, cut when narrow
            [("yes" if schedule.paused else "no", "")],
        ]
        for schedule in schedules
    ]
    return [Table([(c, c != "LAST") for c in columns], rows, one_line=(3,))]


def schedule_details(schedule: Schedule) -> None:
    show(schedule_details_blocks(schedule))


def schedule_details_blocks(schedule: Schedule) -> list[Block]:
    rows: list[list[Line]] = []

    def add(label: str, *value: Span) -> None:
        rows.append([[(label, "")], list(value)])

    add("schedule", span(schedule.name))
    add("when", span(when(schedule)))
    add("time zone", span(schedule.tz))
    add("catch-up", span(schedule.catch_up))
    add("overlap", span(schedule.overlap))
    add("state", ("paused" if schedule.paused else "active", ""))
    add("next slot", (at(schedule.next_slot, schedule.tz), ""))
    if schedule.next_fire != schedule.next_slot:
        add("next job due", (at(schedule.next_fire, schedule.tz), ""))
    add(
        "slots",
        (f"{schedule.fired} fired, {schedule.skipped} skipped, {schedule.missed} missed", ""),
    )
    add("created", (at(schedule.created_at, schedule.tz), ""))
    add("changed", (at(schedule.updated_at, schedule.tz), ""))
    job = schedule.job
    add(
        "job",
        span(job.type),
        ("  queue ", ""),
        span(job.queue),
        (f"  priority {job.priority}", ""),
    )
    options = [f"max attempts {job.max_attempts}"]
    if job.timeout is not None:
        options.append(f"timeout {format_duration(job.timeout)}")
    if job.backoff is not None:
        options.append(f"backoff {format_duration(job.backoff)}")
    options += [word for word, on in (("charging", job.require_charging),) if on]
    options += [word for word, on in (("idle CPU", job.require_idle),) if on]
    add("", span(", ".join(options)))
    if job.subject is not None:
        add("subject", span(job.subject))
    full = f"semctl schedule show {schedule.name} --json"
    add("payload", span(_json(payload_for_screen(job.type, job.payload, full))))
    blocks: list[Block] = [Table([("", False), ("", False)], rows, grid=True)]
    if not schedule.runs:
        return [*blocks, [("no runs yet", "")]]
    runs = [
        [
            [(at(run.slot, schedule.tz), "")],
            [span(run.outcome)],
            [("-" if run.job_id is None else str(run.job_id), "")],
            [("-", "") if run.job_id is None else state_span(run.state or "gone")],
            [(at(run.at, schedule.tz), "")],
        ]
        for run in schedule.runs
    ]
    columns = ("SLOT", "OUTCOME", "JOB", "STATE", "DECIDED")
    return [
        *blocks,
        [("last runs, newest first:", "")],
        Table([(column, True) for column in columns], runs),
    ]


def _json(value: object) -> str:
    import msgspec

    return msgspec.json.encode(value).decode()


#: An exec payload's keys, in the order a schedules file lists them.
_EXEC_KEYS = ("argv", "cwd", "env", "inherit_env")


def _plain(value: object) -> object:
    """``value`` as it reads back once stored (a tuple is a list, a struct a dict)."""
    import msgspec

    return msgspec.to_builtins(value)


def changed_keys(old: ScheduleSpec, new: ScheduleSpec) -> list[str]:
    """The keys, named as a schedules file names them, whose values differ from ``old``
    to ``new``: the schedule's (``cron``, ``jitter``, ``paused``...), then its job's
    (``queue``, ``timeout``...); an exec payload by its own keys (``argv``, ``cwd``,
    ``env``), any other payload as ``payload``. ``old`` may be a whole Schedule: only
    what a spec holds is compared."""
    keys = [
        field
        for field in ScheduleSpec.__struct_fields__
        if field not in ("name", "job")
        and _plain(getattr(old, field)) != _plain(getattr(new, field))
    ]
    for field in JobSpec.__struct_fields__:
        before, after = _plain(getattr(old.job, field)), _plain(getattr(new.job, field))
        if before == after:
            continue
        if field == "payload" and isinstance(before, dict) and isinstance(after, dict):
            both = set(before) | set(after)
            ordered = [key for key in _EXEC_KEYS if key in both] + sorted(both - set(_EXEC_KEYS))
            keys += [key for key in ordered if before.get(key) != after.get(key)]
        else:
            keys.append(field)
    return keys


def diff_lines(
    changes: ScheduleChanges, specs: list[ScheduleSpec], before: Sequence[ScheduleSpec] = ()
) -> list[str]:
    """``+ nightly  cron 0 3 * * * Europe/Berlin``, ``~ often  every 15m``, ``- old``,
    then how many are unchanged, and for a dry run that nothing was changed.

    Given ``before``, the schedules as they were, an updated one's line ends with what
    changed: ``~ nightly  cron 0 4 * * * UTC  (changes cron, env)``."""
    by_name = {spec.name: spec for spec in specs}
    old = {spec.name: spec for spec in before}
    lines = [f"+ {name}  {when(by_name[name])}" for name in changes.created if name in by_name]
    for name in changes.updated:
        if name not in by_name:
            continue
        line = f"~ {name}  {when(by_name[name])}"
        if name in old:
            line += f"  (changes {', '.join(changed_keys(old[name], by_name[name]))})"
        lines.append(line)
    lines += [f"- {name}" for name in changes.removed]
    count = len(changes.unchanged)
    if count:
        lines.append(f"= {count} unchanged")
    if not (changes.created or changes.updated or changes.removed):
        lines.append("no changes")
    if changes.dry_run:
        lines.append("dry run: nothing was changed")
    return lines
