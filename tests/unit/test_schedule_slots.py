"""Slot arithmetic: every, cron in a zone, jitter, DST in Europe/Berlin, and catch-up."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from semantica.models import JobSpec
from semantica.schedule_slots import LATE_AFTER_S, decide, due_at, jitter_of, slot_after
from semantica.schedules import ScheduleSpec

BERLIN = ZoneInfo("Europe/Berlin")
T0 = 1_800_000_000.0  # a whole hour (UTC)


def spec(**fields: object) -> ScheduleSpec:
    fields.setdefault("name", "s")
    return ScheduleSpec(job=JobSpec(type="T"), **fields)  # type: ignore[arg-type]


def local(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, BERLIN).isoformat()


def steps(s: ScheduleSpec, start: datetime, count: int) -> list[str]:
    """The first ``count`` slots after ``start``, each stepped from the one before."""
    out, at = [], start.timestamp()
    for _ in range(count):
        nxt = slot_after(s, at)
        assert nxt is not None
        out.append(local(nxt))
        at = nxt
    return out


def test_every_counts_from_the_epoch() -> None:
    """--every 15m fires at :00, :15, :30, :45, whenever the schedule was made."""
    s = spec(every=900.0)
    assert slot_after(s, T0 + 1) == T0 + 900
    assert slot_after(s, T0) == T0 + 900  # strictly after
    assert slot_after(s, T0 - 0.5) == T0


def test_cron_is_read_in_its_zone() -> None:
    """A cron expression's hours are the zone's: 09:00 Berlin is 08:00 UTC in winter."""
    s = spec(cron="0 9 * * *", tz="Europe/Berlin")
    start = datetime(2026, 1, 10, 12, tzinfo=BERLIN)
    assert steps(s, start, 2) == ["2026-01-11T09:00:00+01:00", "2026-01-12T09:00:00+01:00"]
    utc = spec(cron="0 9 * * *")
    nxt = slot_after(utc, start.timestamp())
    assert nxt is not None and local(nxt) == "2026-01-11T10:00:00+01:00"


def test_daily_0230_across_spring_forward() -> None:
    """2026-03-29 02:00 -> 03:00 in Berlin: the 02:30 slot that day is 03:00, one a day."""
    s = spec(cron="30 2 * * *", tz="Europe/Berlin")
    assert steps(s, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 4) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_daily_0230_across_fall_back() -> None:
    """2026-10-25 03:00 -> 02:00 in Berlin: one 02:30 slot that day, the first."""
    s = spec(cron="30 2 * * *", tz="Europe/Berlin")
    assert steps(s, datetime(2026, 10, 23, 12, tzinfo=BERLIN), 4) == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # From a moment in the second pass of the repeated hour, the next is the next day.
    second_pass = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN).timestamp()
    nxt = slot_after(s, second_pass)
    assert nxt is not None and local(nxt) == "2026-10-26T02:30:00+01:00"


def test_every_30_minutes_across_spring_forward() -> None:
    """*/30 skips the hour that does not exist."""
    s = spec(cron="*/30 * * * *", tz="Europe/Berlin")
    assert steps(s, datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN), 4) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


def test_every_30_minutes_across_fall_back_runs_in_both_passes() -> None:
    """*/30 runs at 02:00 and 02:30 in summer time, then again in winter time."""
    s = spec(cron="*/30 * * * *", tz="Europe/Berlin")
    assert steps(s, datetime(2026, 10, 25, 1, 45, tzinfo=BERLIN), 6) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]


def test_jitter_is_fixed_per_schedule_and_slot() -> None:
    """Each slot's jitter is in [0, jitter), whole milliseconds, the same every time,
    and differs between slots and between schedules."""
    s = spec(every=60.0, jitter=30.0)
    values = [jitter_of(s, T0 + 60 * n) for n in range(200)]
    assert all(0 <= v < 30 for v in values)
    assert all(abs(round(v * 1000) - v * 1000) < 1e-6 for v in values)
    assert values == [jitter_of(spec(every=60.0, jitter=30.0), T0 + 60 * n) for n in range(200)]
    assert len(set(values)) > 150
    other = [jitter_of(spec(name="t", every=60.0, jitter=30.0), T0 + 60 * n) for n in range(200)]
    assert other != values
    assert jitter_of(spec(every=60.0), T0) == 0.0
    assert due_at(s, T0) == T0 + jitter_of(s, T0)


def test_decide_nothing_before_the_slot_is_due() -> None:
    s = spec(every=60.0)
    assert decide(s, T0 + 60, T0 + 59.9) is None
    d = decide(s, T0 + 60, T0 + 60)
    assert d is not None and (d.slot, d.missed, d.next_slot) == (T0 + 60, 0, T0 + 120)


@pytest.mark.parametrize("catch_up", ["one", "none"])
def test_decide_after_three_slots_down(catch_up: str) -> None:
    """Three slots due: two missed, the latest fires with catch_up one; with none, it is
    late (more than a minute) and missed too."""
    s = spec(every=3600.0, catch_up=catch_up)
    d = decide(s, T0 + 3600, T0 + 3 * 3600 + 120)
    assert d is not None
    if catch_up == "one":
        assert (d.slot, d.missed) == (T0 + 3 * 3600, 2)
    else:
        assert (d.slot, d.missed) == (None, 3)
    assert d.next_slot == T0 + 4 * 3600 and d.latest == T0 + 3 * 3600


def test_late_is_the_shorter_of_a_minute_and_the_gap() -> None:
    """Every 10 s: a slot decided 11 s after it was due is late; one at 9 s is not."""
    s = spec(every=10.0, catch_up="none")
    on_time = decide(s, T0 + 10, T0 + 19)
    assert on_time is not None and on_time.slot == T0 + 10
    late = decide(s, T0 + 10, T0 + 10 + 10.5)  # the slot at T0 + 20 is due, and not late
    assert late is not None and (late.slot, late.missed) == (T0 + 20, 1)
    hourly = spec(every=3600.0, catch_up="none")
    assert decide(hourly, T0, T0 + LATE_AFTER_S - 1) is not None
    decided = decide(hourly, T0, T0 + LATE_AFTER_S + 1)
    assert decided is not None and decided.slot is None


def test_a_slot_waits_for_its_jitter() -> None:
    """A slot is due at slot + jitter; the slots after the latest due one wait."""
    s = spec(every=60.0, jitter=50.0)
    first = T0 + 60
    assert decide(s, first, due_at(s, first) - 0.001) is None
    d = decide(s, first, due_at(s, first))
    assert d is not None and d.slot == first and d.next_slot == first + 60


def test_a_day_of_every_second_is_arithmetic() -> None:
    """Every second, down a day: decided at once, exactly 86,399 missed."""
    s = spec(every=1.0)
    started = time.monotonic()
    d = decide(s, T0 + 1, T0 + 86_400.5)
    assert time.monotonic() - started < 0.05
    assert d is not None and (d.slot, d.missed, d.next_slot) == (T0 + 86_400, 86_399, T0 + 86_401)


def test_a_cron_down_for_a_month_is_decided_fast_and_counted_near_enough() -> None:
    """A cron every minute down for 30 days: decided in well under a second, the latest
    slot exact, the missed ones within a percent of 43,199."""
    s = spec(cron="* * * * *")
    start = slot_after(s, T0)
    assert start is not None
    now = start + 30 * 86_400 + 30
    began = time.monotonic()
    d = decide(s, start, now)
    assert time.monotonic() - began < 1.0
    assert d is not None and d.slot == start + 30 * 86_400
    assert abs(d.missed - 43_199) < 432
    assert d.next_slot == start + 30 * 86_400 + 60


def test_a_cron_down_for_a_few_slots_is_exact() -> None:
    s = spec(cron="*/5 * * * *", tz="Europe/Berlin")
    start = slot_after(s, T0)
    assert start is not None
    d = decide(s, start, start + 5 * 300 + 10)
    assert d is not None and (d.slot, d.missed) == (start + 5 * 300, 5)
