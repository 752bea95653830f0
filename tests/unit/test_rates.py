"""Recent counts for top: per-second buckets over the last minute and per-minute buckets
over the last hour, in fixed memory."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

from semantica.protocol import MinuteCounts
from semantica.supervisor.rates import HOUR_MINUTES, RecentCounts, this_minute
from semantica.supervisor.topview import per_minute


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_counts_fall_out_of_the_window_as_time_passes() -> None:
    clock = Clock()
    counts = RecentCounts(clock)
    counts.add()
    clock.t += 5
    counts.add(3)
    assert (counts.within(10), counts.within(60), counts.within(1)) == (4, 4, 3)
    clock.t += 6  # the first one is 11 s old
    assert (counts.within(10), counts.within(60)) == (3, 4)
    clock.t += 60  # everything is more than a minute old
    assert counts.within(60) == 0
    counts.add()
    assert counts.within(60) == 1


def test_memory_does_not_grow_with_the_rate() -> None:
    """A million events in a minute take the same 61 slots as one."""
    clock = Clock()
    counts = RecentCounts(clock)
    for i in range(1_000_000):
        if i % 20_000 == 0:
            clock.t += 1
        counts.add()
    assert counts.within(60) == 1_000_000
    assert len(counts._counts) == 61


def test_per_minute_counts_every_minute_of_the_hour_oldest_first() -> None:
    """Sixty counts, the current minute last; quiet minutes are zeros, not left out."""
    clock = Clock()
    clock.t = 60 * 1000 + 30  # half-way through minute 1000
    counts = RecentCounts(clock, wall=clock)
    counts.add(2)
    clock.t += 60 * 3  # minute 1003
    counts.add()
    clock.t += 20  # still minute 1003
    counts.add(4)
    minutes = counts.per_minute(this_minute(clock))
    assert len(minutes) == HOUR_MINUTES
    assert minutes[-1] == 5 and minutes[-4] == 2
    assert sum(minutes) == 7 and minutes.count(0) == HOUR_MINUTES - 2


def test_per_minute_forgets_what_is_over_an_hour_old() -> None:
    """A minute leaves the hour as time passes, and its slot counts a new minute from zero."""
    clock = Clock()
    clock.t = 60 * 1000.0
    counts = RecentCounts(clock, wall=clock)
    counts.add(3)
    clock.t += 60 * (HOUR_MINUTES - 1)  # minute 1059: minute 1000 is the oldest shown
    assert counts.per_minute(this_minute(clock))[0] == 3
    clock.t += 60  # minute 1060 takes minute 1000's slot
    assert sum(counts.per_minute(this_minute(clock))) == 0
    counts.add()
    assert counts.per_minute(this_minute(clock)) == [0] * (HOUR_MINUTES - 1) + [1]
    clock.t += 60 * 24 * HOUR_MINUTES  # a day asleep: nothing of before is left
    assert sum(counts.per_minute(this_minute(clock))) == 0


def test_a_clock_set_back_does_not_mix_minutes() -> None:
    """Counts of minutes now "in the future" are not shown, and not added to others."""
    clock = Clock()
    clock.t = 60 * 1000.0
    counts = RecentCounts(clock, wall=clock)
    counts.add()
    clock.t -= 60 * 5  # minute 995
    counts.add(2)
    assert counts.per_minute(this_minute(clock))[-1] == 2
    assert sum(counts.per_minute(this_minute(clock))) == 2
    clock.t += 60 * 5  # back at minute 1000: both are in the hour
    assert sum(counts.per_minute(this_minute(clock))) == 3


def test_per_minute_memory_does_not_grow() -> None:
    """A million events over a day take the same 60 minute slots."""
    clock = Clock()
    counts = RecentCounts(clock, wall=clock)
    for i in range(1_000_000):
        if i % 1000 == 0:
            clock.t += 90
        counts.add()
    assert len(counts._by_minute) == HOUR_MINUTES
    # The last hour: 40 steps of 90 s (the first of them only in part).
    assert 39_000 <= sum(counts.per_minute(this_minute(clock))) <= 41_000


def test_top_counts_line_up_the_three_counters_by_minute() -> None:
    """The top reply's minutes start on the minute, UTC, one apart, the current one last;
    each carries the three counts of that minute."""
    clock = Clock()
    clock.t = 1_800_000_000.0 + 15  # 2027-01-15 08:00:15 UTC
    enqueued, finished, failed = (RecentCounts(clock, wall=clock) for _ in range(3))
    enqueued.add(3)
    clock.t += 60
    finished.add(2)
    failed.add()
    minutes = per_minute(enqueued, finished, failed, this_minute(clock))
    assert len(minutes) == HOUR_MINUTES
    assert minutes[-1] == MinuteCounts(
        start=datetime(2027, 1, 15, 8, 1, tzinfo=UTC), enqueued=0, finished=2, failed=1
    )
    assert minutes[-2] == MinuteCounts(
        start=datetime(2027, 1, 15, 8, 0, tzinfo=UTC), enqueued=3, finished=0, failed=0
    )
    assert all((b.start - a.start).total_seconds() == 60 for a, b in pairwise(minutes))
