"""Schedules as data: what a client asks for, what it reads back, and the checks.

A schedule makes one job per **slot**. Its slots come either from a cron
expression read in a time zone (``cron``, ``tz``; parsed by cronsim, never by
us) or from an interval (``every``, seconds), whose slots are the multiples of
the interval counted from the Unix epoch, so every node and every restart
agrees on them (``--every 15m`` fires at :00, :15, :30 and :45).

Each slot's job is made by the store in the same transaction that claims the
slot, so a slot never gives two jobs (see the store contract). What happens to
slots that pass while no supervisor runs is ``catch_up``: ``one`` (the default)
gives one job, for the latest of them, on return; ``none`` gives none.
``overlap``: ``skip`` (the default) skips a slot, and records the skip, while
the schedule's previous job is still queued or running; ``allow`` fires anyway.
``jitter``: each slot's job is due up to that many seconds after the slot, by
an amount fixed per (schedule, slot), the same on every node; it is shorter
than the gap between slots (the interval, or the shortest gap between a cron
expression's coming slots).

These records travel in protocol messages (schema evolution rule: new fields
get defaults, field types never change) and are what ``--json`` prints.
This module imports only msgspec and the shared models (``semctl``'s fast path);
the cron library is imported only when an expression is checked.
"""

# Annotations are evaluated here, not postponed (no `from __future__ import
# annotations`): msgspec reads a Struct's field types when a decoder is first built,
# and each postponed one costs it a compile() and an eval (the control replies have
# about 200: a few ms of every new `semctl` or Client process).

from datetime import datetime, tzinfo
from itertools import pairwise

import msgspec

from semantica.errors import EXIT_NOT_FOUND, BadInput, SemanticaError, register_code
from semantica.models import (
    SECONDS_MAX,
    JobSpec,
    JobState,
    short_repr,
    validate_name,
    validate_spec,
)

CATCH_UP_CHOICES = ("one", "none")
OVERLAP_CHOICES = ("skip", "allow")
#: The shortest interval a schedule may have (``--every``).
EVERY_MIN_S = 1.0
#: The longest cron expression (every value of every field listed is about 400).
CRON_MAX = 1000


@register_code
class NoSuchSchedule(SemanticaError):
    """No schedule has this name."""

    code = "no_such_schedule"
    exit_code = EXIT_NOT_FOUND


class ScheduleSpec(msgspec.Struct, kw_only=True):
    """What a client asks for: a schedule's name, its slots, and the job each slot makes."""

    name: str
    job: JobSpec  # the job each slot makes (no delay or start time: it is due at its slot)
    cron: str | None = None  # a five-field cron expression, read in ``tz``
    every: float | None = None  # or an interval in seconds, slots counted from the epoch
    tz: str = "UTC"  # an IANA zone name, e.g. Europe/Berlin
    jitter: float = 0.0  # seconds; each slot's job is due up to this long after the slot
    catch_up: str = "one"  # "one" | "none": slots missed while down
    overlap: str = "skip"  # "skip" | "allow": a slot while the previous job is live
    paused: bool = False


class ScheduleRun(msgspec.Struct, kw_only=True):
    """One slot of a schedule, decided: fired (its job), skipped, or run by hand."""

    slot: datetime
    outcome: str  # "fired" | "skipped" (overlap) | "manual" (``schedule run``) | "refused"
    at: datetime  # when it was decided
    job_id: int | None = None
    state: JobState | None = None  # the job's state now; None: no job, or it is gone


class Schedule(ScheduleSpec, kw_only=True):
    """A schedule as clients read it: its spec and where it stands."""

    created_at: datetime | None = None
    updated_at: datetime | None = None
    next_slot: datetime | None = None  # the next slot to be decided (None: paused)
    next_fire: datetime | None = None  # when its job will be due: the slot plus its jitter
    last_slot: datetime | None = None  # the latest slot decided (fired or skipped)
    last_job_id: int | None = None  # the job of the latest slot fired or run by hand
    fired: int = 0  # slots that made a job
    skipped: int = 0  # slots skipped because the previous job was still live
    missed: int = 0  # slots that gave no job: passed while no supervisor ran, or refused
    runs: list[ScheduleRun] = msgspec.field(default_factory=list)  # newest first (show only)


class ScheduleChanges(msgspec.Struct, kw_only=True):
    """What applying a set of schedules did (or, dry, would do), by schedule name."""

    created: list[str] = msgspec.field(default_factory=list)
    updated: list[str] = msgspec.field(default_factory=list)
    removed: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)
    dry_run: bool = False


def schedule_exists(name: str) -> str:
    """What a create of a schedule that exists is refused with."""
    return f"a schedule named {name!r} exists (--replace, or replace=True, replaces it)"


def validate_schedule_name(name: str) -> None:
    """Raises BadInput unless ``name`` is 1-64 of ``A-Z a-z 0-9 _ . : -``."""
    validate_name("schedule", name)


def validate_schedule(spec: ScheduleSpec) -> None:
    """Check a schedule spec whole, before any store sees it.

    Raises:
        BadInput: with a one-line reason naming the field.
    """
    validate_schedule_name(spec.name)
    if (spec.cron is None) == (spec.every is None):
        raise BadInput("a schedule needs exactly one of --cron EXPR and --every DURATION")
    if spec.every is not None and not EVERY_MIN_S <= spec.every < SECONDS_MAX:
        raise BadInput(
            f"--every must be at least {EVERY_MIN_S:g} s and below {SECONDS_MAX:.0e} s, "
            f"got {spec.every:g}"
        )
    zone = check_zone(spec.tz)
    if spec.cron is not None:
        check_cron(spec.cron, zone)
    if not 0 <= spec.jitter < SECONDS_MAX:
        raise BadInput(f"--jitter must be 0 or more seconds, got {spec.jitter:g}")
    # Each slot is decided after the one before it: a jitter as long as the gap to the
    # next slot would make the slots behind it pile up and be counted missed while the
    # supervisor runs.
    if spec.every is not None and spec.jitter >= spec.every:
        raise BadInput(
            f"--jitter must be shorter than --every ({spec.every:g} s), got {spec.jitter:g} s"
        )
    if spec.cron is not None and spec.jitter > 0:
        gap = shortest_cron_gap(spec.cron, zone)
        if gap is not None and spec.jitter >= gap:
            raise BadInput(
                f"--jitter must be shorter than the {gap:g} s between slots of --cron, "
                f"got {spec.jitter:g} s"
            )
    if spec.catch_up not in CATCH_UP_CHOICES:
        raise BadInput(f"--catch-up must be one of {', '.join(CATCH_UP_CHOICES)}")
    if spec.overlap not in OVERLAP_CHOICES:
        raise BadInput(f"--overlap must be one of {', '.join(OVERLAP_CHOICES)}")
    if spec.job.delay is not None or spec.job.at is not None:
        raise BadInput("a scheduled job is due at its slot: it takes no --delay or --at")
    if spec.job.after or spec.job.after_end or spec.job.ref is not None:
        # Each slot's job would wait for the same jobs, and once retention deleted one,
        # no slot could make its job again.
        raise BadInput("a scheduled job waits for no other job: it takes no --after or ref")
    if spec.job.supersede_running:
        # Stopping the running job is the enqueue request's work; a slot fired by the
        # supervisor's timer would supersede it queued only, and let it run on.
        raise BadInput(
            "a scheduled job cannot supersede a running one (--supersede-running); "
            "--overlap skip keeps a slot from starting while the last one runs"
        )
    validate_spec(spec.job)


def check_zone(name: str) -> tzinfo:
    """The ``zoneinfo.ZoneInfo`` named ``name``.

    Raises:
        BadInput: no such IANA time zone on this machine.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # (not on semctl's fast path)

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(
            f"unknown time zone {short_repr(name)} (an IANA name: Europe/Berlin, UTC)"
        ) from None


def check_cron(expression: str, zone: tzinfo) -> None:
    """Raises BadInput unless cronsim reads ``expression``, one line of at most
    :data:`CRON_MAX` characters (cronsim takes any whitespace, and any length)."""
    from cronsim import CronSim, CronSimError  # (not on semctl's fast path)

    if len(expression) > CRON_MAX or not expression.isprintable():
        raise BadInput(
            f"bad cron expression {short_repr(expression)}: one line of at most "
            f"{CRON_MAX} printable characters"
        )
    try:
        CronSim(expression, datetime.now(zone))
    except (CronSimError, ValueError) as exc:
        raise BadInput(f"bad cron expression {short_repr(expression)}: {exc}") from None


#: How far :func:`shortest_cron_gap` looks: this many slots, within this many seconds.
GAP_SLOTS = 32
GAP_HORIZON_S = 366 * 86400.0


def shortest_cron_gap(expression: str, zone: tzinfo) -> float | None:
    """The shortest gap, in seconds, between the next slots of a valid cron
    ``expression`` read in ``zone`` (up to :data:`GAP_SLOTS` of them, within
    :data:`GAP_HORIZON_S` of the first: a leap-day expression costs no century of
    steps); None if fewer than two slots come within that."""
    from cronsim import CronSim  # (not on semctl's fast path)

    slots: list[float] = []
    try:
        for moment in CronSim(expression, datetime.now(zone)):
            slot = moment.timestamp()
            if slots and slot - slots[0] > GAP_HORIZON_S:
                break
            # Real seconds, and each slot once: across a repeated hour cronsim may give
            # an instant again (the slot arithmetic passes those over too).
            if not slots or slot > slots[-1]:
                slots.append(slot)
            if len(slots) >= GAP_SLOTS:
                break
    except StopIteration:  # (cronsim gives up after 50 years without a match)
        pass
    return min((b - a for a, b in pairwise(slots)), default=None)
