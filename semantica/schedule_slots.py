"""Slot arithmetic for schedules: which slots a schedule has, when each is due, and
what to do with the slots that came due since it was last looked at. Pure: no
store, no clock of its own; every time is Unix seconds (a float), the way the
store keeps it.

* **Slots.** ``every``: the multiples of the interval from the Unix epoch, so
  every node and every restart agrees. ``cron``: the times cronsim gives for
  the expression read in ``tz``, stepped from the previous slot, which is kept
  as a UTC instant (:func:`slot_after`). What that gives across daylight saving
  time, checked in ``tests/unit/test_schedule_slots.py`` for Europe/Berlin:

  - a daily ``30 2 * * *`` runs at 03:00 on the spring-forward day (02:30 does
    not exist; cronsim runs the job at the first minute after the gap, as
    Debian's cron does), and once on the fall-back day, at the first 02:30
    (summer time): from that slot, the next step is the next day;
  - an expression with ``*`` in its minute or hour field (``*/30 * * * *``,
    ``0 * * * *``) runs in both passes of the repeated hour on the fall-back
    day (02:00 and 02:30 summer time, then 02:00 and 02:30 winter time), and
    skips the hour that does not exist on the spring-forward day.

* **Jitter.** Each slot's job is due ``jitter_of`` seconds after the slot, in
  ``[0, jitter)``, fixed by a hash of (schedule name, slot): every node
  computes the same. A slot is *due* at slot + jitter.

* **Catch-up** (:func:`decide`). The slots due are those from the schedule's
  next slot on whose due time has come, each decided only after the one
  before it (a jitter longer than the gap between slots is not reordered).
  Of them, all but the latest are *missed* (counted, never each written: a
  schedule every second down for a day must not cost 86,400 steps); the latest
  fires, unless it is *late* (decided more than ``min(LATE_AFTER_S, the gap to
  the slot after it)`` after it was due) and ``catch_up`` is ``none``: then it
  is missed too. A cron schedule down for more than :data:`STEP_CAP` of its
  slots has its missed slots counted up to there and estimated beyond, from
  their mean gap (an ``every`` schedule counts them exactly, by arithmetic).

cronsim is imported only when a cron slot is computed (not on ``semctl``'s fast
path).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

import msgspec

from semantica.schedules import ScheduleSpec

#: A slot decided later than this after it was due (or than the gap to the next
#: slot, if shorter) is late: ``catch_up = "none"`` misses it.
LATE_AFTER_S = 60.0
#: The most slots stepped through one by one in one decision (see the docstring).
STEP_CAP = 1000


class Decision(msgspec.Struct, frozen=True):
    """What to do with a schedule's slots due now (see :func:`decide`)."""

    slot: float | None  # the slot that fires (or is skipped, if the previous job is live)
    missed: int  # slots that give no job
    next_slot: float | None  # the first slot not decided yet (None: the schedule has no more)
    latest: float  # the latest slot decided (fired or missed)


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def jitter_of(spec: ScheduleSpec, slot: float) -> float:
    """How long after ``slot`` its job is due: in ``[0, spec.jitter)``, whole
    milliseconds, the same on every node (a hash of the schedule's name and the slot)."""
    if spec.jitter <= 0:
        return 0.0
    digest = hashlib.blake2b(f"{spec.name}@{slot:.6f}".encode(), digest_size=8).digest()
    # Whole milliseconds: a due time read back as a datetime (microseconds) is the same.
    return math.floor(spec.jitter * 1000 * (int.from_bytes(digest, "big") / 2.0**64)) / 1000


def due_at(spec: ScheduleSpec, slot: float) -> float:
    """When the job of ``slot`` is due: the slot plus its jitter."""
    return slot + jitter_of(spec, slot)


def _cron_from(spec: ScheduleSpec, after: float) -> Iterator[float]:
    """The cron slots strictly after ``after``, in order (stepped by cronsim from the
    instant ``after`` read in the schedule's zone)."""
    from cronsim import CronSim

    assert spec.cron is not None
    start = datetime.fromtimestamp(after, _zone(spec.tz))
    try:
        for moment in CronSim(spec.cron, start):
            slot = moment.timestamp()
            # A fixed-time expression is stepped by cronsim in local time: from a slot
            # in the second pass of a repeated hour, its next time may read as the
            # first pass, an instant before. Those are passed over.
            if slot > after:
                yield slot
    except StopIteration:  # (cronsim gives up after 50 years without a match)
        return


def slot_after(spec: ScheduleSpec, after: float) -> float | None:
    """The first slot of ``spec`` strictly after ``after``; None if it has none."""
    if spec.every is not None:
        return (math.floor(after / spec.every) + 1) * spec.every
    return next(_cron_from(spec, after), None)


def _latest_cron_slot(spec: ScheduleSpec, at_most: float) -> float | None:
    """The latest cron slot at or before ``at_most``, found backwards."""
    from cronsim import CronSim

    assert spec.cron is not None
    top = math.floor(at_most)
    # cronsim's reverse steps one second back first: start a second above.
    start = datetime.fromtimestamp(top + 1, UTC).astimezone(_zone(spec.tz))
    try:
        slot = next(CronSim(spec.cron, start, reverse=True)).timestamp()
    except StopIteration:
        return None
    return slot if slot <= at_most else None


def _late(spec: ScheduleSpec, slot: float, following: float | None, now: float) -> bool:
    gap = math.inf if following is None else following - slot
    return now - due_at(spec, slot) > min(LATE_AFTER_S, gap)


def _outcome(
    spec: ScheduleSpec, latest: float, count: int, following: float | None, now: float
) -> Decision:
    """The decision once the due slots are known: ``count`` of them, ``latest`` the last."""
    missed = count - 1
    slot: float | None = latest
    if spec.catch_up == "none" and _late(spec, latest, following, now):
        slot, missed = None, count
    return Decision(slot=slot, missed=missed, next_slot=following, latest=latest)


def decide(spec: ScheduleSpec, next_slot: float, now: float) -> Decision | None:
    """What to do with the slots of ``spec`` from ``next_slot`` that are due at ``now``
    (see the module docstring); None if ``next_slot`` is not due yet."""
    if due_at(spec, next_slot) > now:
        return None
    if spec.every is not None:
        return _decide_every(spec, spec.every, next_slot, now)
    return _decide_cron(spec, next_slot, now)


def _decide_every(spec: ScheduleSpec, every: float, next_slot: float, now: float) -> Decision:
    first = round(next_slot / every)
    # Every slot at or before now - jitter is due, whatever its own jitter: counted.
    last = max(first, math.floor((now - spec.jitter) / every))
    # Those after it are due one by one while their jitter has passed.
    steps = 0
    while steps < STEP_CAP and due_at(spec, (last + 1) * every) <= now:
        last, steps = last + 1, steps + 1
    return _outcome(spec, last * every, last - first + 1, (last + 1) * every, now)


def _decide_cron(spec: ScheduleSpec, next_slot: float, now: float) -> Decision:
    latest, count = next_slot, 1
    slots = _cron_from(spec, next_slot)
    following = next(slots, None)
    while following is not None and due_at(spec, following) <= now:
        latest, count = following, count + 1
        if count % STEP_CAP == 0 and following < now - spec.jitter - LATE_AFTER_S:
            # Down for long: jump to the latest slot surely due, and estimate how many
            # were passed over from the mean gap so far.
            jump = _latest_cron_slot(spec, now - spec.jitter)
            if jump is not None and jump > latest:
                gap = (latest - next_slot) / (count - 1)
                count += max(1, round((jump - latest) / gap)) if gap > 0 else 1
                latest = jump
                slots = _cron_from(spec, jump)
        following = next(slots, None)
    return _outcome(spec, latest, count, following, now)
